// Settings > Developer: webhook endpoints, at 1280 and 390 px, against a real receiver: add one
// (a refused URL explained first), see the secret once, see deliveries, a failure and "Retry
// now", pause, roll the secret, delete; members see no webhooks. Screenshots go to
// target/screenshots/webhooks-*.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  DESKTOP,
  PHONE,
  appApi,
  byTestId,
  controlsCutOff,
  loginToken,
  openPage,
  screenshot,
  signIn,
  startServer,
} from './harness.mjs';

const WIDTHS = [
  ['desktop', DESKTOP],
  ['phone', PHONE],
];

let server;
let ownerToken;
const member = { email: 'mia@acme.test', password: 'a long passphrase for mia', name: 'Mia Member' };

/** A webhook receiver that records what arrives and answers with `receiver.status`. */
const receiver = { status: 200, received: [], url: null, server: null };

before(async () => {
  receiver.server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      receiver.received.push({ id: request.headers['webhook-id'], body: JSON.parse(body) });
      response.writeHead(receiver.status);
      response.end('ok');
    });
  });
  await new Promise((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${receiver.server.address().port}/hooks`;
  server = await startServer({
    HEFFL_WEBHOOK_ALLOW_HTTP: 'true',
    HEFFL_WEBHOOK_ALLOW_PRIVATE: 'true',
    HEFFL_WEBHOOK_RETRY_SCALE: '0.001',
  });
  ownerToken = await loginToken(server, server.owner);
  const invited = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/invitations`, ownerToken, {
    email: member.email,
    role: 'member',
  });
  assert.equal(invited.status, 201, JSON.stringify(invited.body));
  const added = await appApi(server, 'POST', '/invitations/accept', null, {
    token: invited.body.token,
    name: member.name,
    password: member.password,
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
});

after(async () => {
  if (server) await server.stop();
  if (receiver.server) await new Promise((resolve) => receiver.server.close(resolve));
});

async function createKey(name) {
  const created = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/api-keys`, ownerToken, { name });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body;
}

/** The signing secret once its dialog shows it. */
async function shownSecret(page) {
  await page.waitForFunction(
    (selector) => /^whsec_/.test(document.querySelector(selector)?.textContent || ''),
    byTestId('webhook-secret-value'),
  );
  return page.locator(byTestId('webhook-secret-value')).textContent();
}

async function until(what, check, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    assert.ok(Date.now() < deadline, `waited for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('Settings > Developer: webhooks', { timeout: 180_000 }, () => {
  for (const [width, viewport] of WIDTHS) {
    test(`add an endpoint, see its deliveries, retry one, pause, roll and delete it (${width})`, async () => {
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        const card = page.locator(byTestId('webhooks-card'));
        await card.locator(byTestId('webhooks-empty')).waitFor();
        await card.scrollIntoViewIfNeeded();
        await screenshot(page, `webhooks-empty-${width}`, { fullPage: true });

        // A refused address is explained in words, next to the field.
        await page.locator(byTestId('webhook-add-button')).click();
        const dialog = page.locator(byTestId('webhook-dialog'));
        await page.locator(byTestId('webhook-url')).fill('ftp://example.com/hooks');
        await page.locator(byTestId('webhook-submit')).click();
        await page.waitForFunction(
          (selector) => /Endpoint URL must start with https:\/\//.test(document.querySelector(selector)?.textContent || ''),
          byTestId('webhook-error'),
        );
        assert.equal(await page.locator(byTestId('webhook-url')).getAttribute('aria-invalid'), 'true');

        await page.locator(byTestId('webhook-url')).fill(receiver.url);
        await page.locator(byTestId('webhook-description')).fill(`CRM sync ${width}`);
        await page.locator(byTestId('webhook-events-chosen')).check();
        await page.locator(byTestId('webhook-event-api_key.created')).check();
        await screenshot(page, `webhooks-add-${width}`);
        await page.locator(byTestId('webhook-submit')).click();
        await dialog.waitFor({ state: 'hidden' });

        // The secret, once; gone from the page when the dialog closes.
        const secret = await shownSecret(page);
        assert.match(secret, /^whsec_[A-Za-z0-9+/=]{32,}$/);
        await screenshot(page, `webhooks-secret-${width}`);
        await page.locator(byTestId('webhook-secret-done')).click();
        assert.equal(await page.locator(byTestId('webhook-secret-value')).textContent(), '');
        assert.ok(!(await page.content()).includes(secret), 'the secret left the page');

        const item = page.locator(byTestId('webhook-item'), { hasText: `CRM sync ${width}` });
        await item.waitFor();
        assert.match(await item.textContent(), /Key created/);
        assert.equal(await item.locator(byTestId('webhook-status')).textContent(), 'Enabled');

        // A delivery, then a failing one, retried from the page.
        const before = receiver.received.length;
        await createKey(`Delivered ${width}`);
        await until('the first delivery', () => receiver.received.length > before);
        receiver.status = 500;
        await createKey(`Failing ${width}`);
        await until('the failing try', () => receiver.received.length > before + 1);
        await item.locator(byTestId('webhook-deliveries-button')).click();
        const rows = item.locator(byTestId('delivery-row'));
        await rows.first().waitFor();
        await until('the failure shown', async () => {
          await item.locator(byTestId('deliveries-refresh')).click();
          await rows.first().waitFor();
          return /answered 500/.test(await rows.first().locator(byTestId('delivery-answer')).textContent());
        });
        assert.equal(await rows.nth(1).locator(byTestId('delivery-status')).textContent(), 'Delivered');
        await screenshot(page, `webhooks-deliveries-${width}`, { fullPage: true });
        assert.deepEqual(await controlsCutOff(page), [], `at ${width}`);

        receiver.status = 200;
        await rows.first().locator(byTestId('delivery-retry')).click();
        await until('the retry delivered', async () => {
          await item.locator(byTestId('deliveries-refresh')).click();
          await rows.first().waitFor();
          return (await rows.first().locator(byTestId('delivery-status')).textContent()) === 'Delivered';
        });

        // Pause, roll the secret (shown once again), delete.
        await item.locator(byTestId('webhook-pause')).click();
        await page.waitForFunction(
          (selector) => [...document.querySelectorAll(selector)].some((n) => n.textContent === 'Paused'),
          byTestId('webhook-status'),
        );
        await item.locator(byTestId('webhook-roll')).click();
        const rolled = await shownSecret(page);
        assert.match(rolled, /^whsec_/);
        assert.notEqual(rolled, secret);
        assert.match(await page.locator(byTestId('webhook-secret-note')).textContent(), /24 hours/);
        await page.keyboard.press('Escape');
        assert.equal(await page.locator(byTestId('webhook-secret-value')).textContent(), '');
        await item.locator(byTestId('webhook-delete')).click();
        assert.equal(await page.locator(byTestId('webhook-delete-url')).textContent(), receiver.url);
        await page.locator(byTestId('webhook-delete-confirm')).click();
        await item.waitFor({ state: 'detached' });
        const sideways = await page.evaluate(
          () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
        );
        assert.equal(sideways, 0, `no sideways scrolling at ${width}`);
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }

  test('members see no webhooks', async () => {
    const { page, problems, close } = await openPage(server, DESKTOP);
    try {
      await signIn(server, page, member);
      await page.waitForFunction(
        (selector) => /Member/.test(document.querySelector(selector)?.textContent || ''),
        byTestId('workspace-role'),
      );
      assert.equal(await page.locator(byTestId('webhooks-card')).isHidden(), true);
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});
