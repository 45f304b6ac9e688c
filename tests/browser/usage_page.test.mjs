// Settings > Developer beyond create and revoke: usage charts after real traffic of each kind,
// the key detail view, create with scopes/expiry/rate limit, roll, revoked and leaked keys, the
// "unused" marker, the small fixes, /docs — at 1280 and 390 px, and from the keyboard alone.
// Screenshots go to target/screenshots/usage-*.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  KEY_PATTERN,
  PHONE,
  activeTestId,
  appApi,
  byTestId,
  callApi,
  controlsCutOff,
  loginToken,
  openPage,
  rowNamed,
  screenshot,
  signIn,
  startServer,
} from './harness.mjs';

const DAY_MS = 86_400_000;
const WIDTHS = [
  ['desktop', DESKTOP],
  ['phone', PHONE],
];

let server;
let ownerToken;
const member = { email: 'mia@acme.test', password: 'a long passphrase for mia', name: 'Mia Member' };
const keys = {};

async function createKey(token, body) {
  const created = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/api-keys`, token, body);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body;
}

async function keyRecord(id) {
  const record = await appApi(server, 'GET', `/workspaces/${server.workspaceId}/api-keys/${id}`, ownerToken);
  assert.equal(record.status, 200);
  return record.body;
}

/** Traffic of each kind, then waits until the flush has written it. */
async function makeTraffic() {
  keys.integrator = await createKey(ownerToken, { name: 'Integrator Webhooks' });
  keys.forms = await createKey(ownerToken, { name: 'Website Forms', rateLimitPerMinute: 2 });
  keys.old = await createKey(ownerToken, { name: 'Old Sync' });
  keys.leaked = await createKey(ownerToken, { name: 'Leaked Zapier' });
  for (let i = 0; i < 5; i += 1) assert.equal(await callApi(server, keys.integrator.key), 200);
  for (let i = 0; i < 2; i += 1) {
    assert.equal(await callApi(server, keys.integrator.key, 'GET', '/api/v1/leads/ld_0000000000000000000000'), 404);
  }
  const limited = [];
  for (let i = 0; i < 4; i += 1) limited.push(await callApi(server, keys.forms.key));
  assert.deepEqual(limited, [200, 200, 429, 429]);
  assert.equal(await callApi(server, keys.old.key), 200);
  const revoked = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/api-keys/${keys.old.id}/revoke`, ownerToken);
  assert.equal(revoked.status, 200);
  for (let i = 0; i < 3; i += 1) assert.equal(await callApi(server, keys.old.key), 401);
  const report = await fetch(`${server.base}/api/v1/credentials/revoke`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ keys: [keys.leaked.key] }),
  });
  assert.equal(report.status, 202);
  for (let i = 0; i < 2; i += 1) assert.equal(await callApi(server, keys.leaked.key), 401);

  const deadline = Date.now() + 10_000;
  for (;;) {
    const usage = await appApi(server, 'GET', `/workspaces/${server.workspaceId}/usage?days=1`, ownerToken);
    const sum = (field) => usage.body.buckets.reduce((n, b) => n + b[field], 0);
    if (sum('success') === 8 && sum('rejected') === 5) {
      assert.deepEqual([sum('clientError'), sum('rateLimited')], [2, 2]);
      return;
    }
    assert.ok(Date.now() < deadline, `usage not flushed: ${JSON.stringify(usage.body)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  server = await startServer({ HEFFL_USAGE_FLUSH_INTERVAL: '1s', HEFFL_RATE_LIMIT_PER_MINUTE: '0' });
  ownerToken = await loginToken(server, server.owner);
  // People join only by invitation (docs/api.md §10).
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
  await makeTraffic();
  // An endpoint whose host never resolves: its dialogs can be opened, nothing is delivered.
  const hook = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/webhooks`, ownerToken, {
    url: 'https://hooks.heffl.invalid/in',
  });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
});

after(async () => {
  if (server) await server.stop();
});

describe('Settings > Developer: usage and the key lifecycle', { timeout: 300_000 }, () => {
  for (const [width, viewport] of WIDTHS) {
    test(`usage after traffic of each kind, and the key detail view (${width})`, async () => {
      const { page, problems, requests, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        const chart = page.locator(byTestId('workspace-chart'));
        await chart.waitFor();
        assert.equal(await chart.getAttribute('data-total'), '17');
        const summary = await chart.locator('svg').getAttribute('aria-label');
        assert.match(summary, /17 requests \(8 success, 2 client errors, 2 rate limited, 5 rejected\)/);
        assert.equal(await chart.locator('svg').getAttribute('role'), 'img');
        // The numbers behind the chart, as a table.
        await chart.locator('summary').click();
        const today = chart.locator('tbody tr').first();
        assert.deepEqual(
          (await today.locator('td').allTextContents()).map((t) => t.trim()),
          ['8', '2', '2', '5', '17'],
        );
        await screenshot(page, `usage-workspace-chart-${width}`, { fullPage: true });
        const overflow = await chart
          .locator('.chart-table-wrap')
          .evaluate((wrap) => wrap.scrollWidth - wrap.clientWidth);
        assert.ok(overflow <= 0, `every column of the numbers is in view (${width}): ${overflow}px hidden`);
        await chart.locator('summary').click();
        // Requests by key, busiest first (what the usage answer holds), each opening its key.
        const busiest = page.locator(byTestId('busiest-key'));
        assert.deepEqual(
          (await busiest.allTextContents()).map((t) => t.replace(/\s+/g, ' ').trim()),
          [
            'Integrator Webhooks7 requests',
            'Old Sync4 requests · revoked',
            'Website Forms4 requests',
            'Leaked Zapier2 requests · revoked',
          ],
        );
        assert.match(await page.locator(byTestId('usage-scope')).textContent(), /All times on this page are UTC/);
        // Refused requests by the rule that refused them, in words.
        assert.deepEqual(
          (await page.locator(`${byTestId('workspace-refusals')} ${byTestId('refusal')}`).allTextContents()).map((t) =>
            t.replace(/\s+/g, ' ').trim(),
          ),
          ['5 with the key revoked revoked_api_key', '2 over the rate limit rate_limited'],
        );

        await page.locator('label[for="filter-all"]').click();
        const integrator = rowNamed(page, 'Integrator Webhooks');
        await integrator.waitFor();
        const spark = integrator.locator(`${byTestId('key-sparkline')} svg`);
        await spark.waitFor();
        assert.match(await spark.getAttribute('aria-label'), /Integrator Webhooks: 7 requests in the last 30 days/);
        assert.match(await integrator.locator(byTestId('key-request-count')).textContent(), /7 requests in all/);
        assert.match(await integrator.locator(byTestId('key-last-used')).textContent(), /just now|minute/);
        const lastUsedTitle = await integrator.locator(`${byTestId('key-last-used')} time`).getAttribute('title');
        assert.match(lastUsedTitle, /\d{4}/, 'the exact time on hover');

        // Revoked: when, by whom; still being sent.
        const old = rowNamed(page, 'Old Sync');
        assert.match(await old.locator(byTestId('key-revoked-info')).textContent(), /Revoked just now by Olive Owner/);
        await old.locator(byTestId('key-still-in-use')).waitFor();
        assert.equal(
          await old.locator(byTestId('key-still-in-use')).textContent(),
          'Still in use — 3 attempts since it was revoked',
        );
        // Reported leaked, in warning colours.
        const leaked = rowNamed(page, 'Leaked Zapier');
        assert.equal(await leaked.locator(byTestId('key-revoke-reason')).textContent(), 'reported leaked');
        assert.match(await leaked.locator(byTestId('key-status')).getAttribute('class'), /badge-leaked/);
        const colour = await leaked
          .locator(byTestId('key-revoke-reason'))
          .evaluate((node) => getComputedStyle(node).backgroundColor);
        assert.equal(colour, 'rgb(255, 250, 235)', 'warning background');
        await leaked.locator(byTestId('key-still-in-use')).waitFor();
        assert.match(await leaked.locator(byTestId('key-still-in-use')).textContent(), /2 attempts since it was revoked/);
        await screenshot(page, `usage-key-list-${width}`, { fullPage: true });

        // The detail view of a key: 30 days, 24 hours, its events.
        const name = integrator.locator(byTestId('key-name'));
        await name.click();
        const detail = page.locator(byTestId('key-detail'));
        await detail.waitFor();
        assert.equal(await activeTestId(page), 'detail-name');
        const days = page.locator(byTestId('detail-day-chart'));
        const hours = page.locator(byTestId('detail-hour-chart'));
        await days.waitFor();
        await hours.waitFor();
        assert.equal(await days.getAttribute('data-total'), '7');
        assert.equal(await hours.getAttribute('data-total'), '7');
        assert.equal(await days.locator('svg g.bar').count(), 30);
        assert.equal(await hours.locator('svg g.bar').count(), 24);
        assert.match(await hours.locator('svg').getAttribute('aria-label'), /5 success, 2 client errors/);
        assert.equal(await page.locator(byTestId('detail-request-count')).textContent(), '7');
        assert.match(await page.locator(byTestId('detail-scopes')).textContent(), /me:read/);
        const events = page.locator(byTestId('detail-event'));
        await events.first().waitFor();
        assert.match(await events.first().textContent(), /Created by Olive Owner · just now · from 127\.0\.0\.1/);
        assert.equal(await page.locator(byTestId('key-table')).isVisible(), false);
        await screenshot(page, `usage-key-detail-${width}`, { fullPage: true });

        // Back, and focus returns to the key's name in the list.
        await page.locator(byTestId('detail-back')).click();
        await page.locator(byTestId('key-table')).waitFor();
        assert.equal(await activeTestId(page), 'key-name');

        // A leaked key's detail: why, in warning colours, and that it is still tried.
        await leaked.locator(byTestId('key-name')).click();
        const revokedNotice = page.locator(byTestId('detail-revoked'));
        await revokedNotice.waitFor();
        assert.match(await revokedNotice.textContent(), /Revoked just now — reported leaked/);
        assert.match(await revokedNotice.getAttribute('class'), /notice-warning/);
        await page.locator(byTestId('detail-still-in-use')).waitFor();
        assert.match(
          await page.locator(byTestId('detail-still-in-use')).textContent(),
          /Still in use — 2 attempts since it was revoked/,
        );
        await events.first().waitFor();
        assert.match(await events.first().textContent(), /^Reported leaked · just now/);
        await screenshot(page, `usage-leaked-detail-${width}`, { fullPage: true });
        await page.keyboard.press('Escape');
        await page.locator(byTestId('key-table')).waitFor();

        for (const url of requests) {
          const { origin, pathname } = new URL(url);
          assert.equal(origin, server.base, url);
          assert.match(pathname, /^\/(settings\/developer|app\/v1\/)/, url);
        }
        assert.deepEqual(problems, [], 'no script errors and no CSP refusals');
      } finally {
        await close();
      }
    });
  }

  for (const [width, viewport] of WIDTHS) {
    test(`create with scopes, expiry and a rate limit (${width})`, async () => {
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        await page.locator(byTestId('create-key-button')).click();
        await page.locator(byTestId('create-dialog')).waitFor();
        const boxes = page.locator('#create-scope-list input[type="checkbox"]');
        await boxes.first().waitFor();
        assert.ok((await boxes.count()) >= 3);
        for (const box of await boxes.all()) assert.equal(await box.isChecked(), true, 'all scopes by default');
        assert.equal(await page.locator(byTestId('create-rate')).isVisible(), true, 'owners may set a rate limit');
        const name = `Data Sync ${width}`;
        await page.locator(byTestId('create-name')).fill(name);
        await page.locator(byTestId('scope-leads:write')).uncheck();
        await page.locator(byTestId('create-expiry')).selectOption('90');
        await page.locator(byTestId('create-rate')).fill('30');
        await screenshot(page, `usage-create-dialog-${width}`);
        await page.locator(byTestId('create-submit')).click();
        await page.locator(byTestId('new-key-dialog')).waitFor();
        const secret = (await page.locator(byTestId('new-key-value')).textContent()).trim();
        assert.match(secret, KEY_PATTERN);
        await page.locator(byTestId('new-key-done')).click();

        const row = rowNamed(page, name);
        await row.waitFor();
        const record = await keyRecord(await row.getAttribute('data-key-id'));
        assert.deepEqual([...record.scopes].sort(), ['leads:read', 'me:read']);
        assert.equal(record.rateLimitPerMinute, 30);
        const inDays = (new Date(record.expiresAt).getTime() - Date.now()) / DAY_MS;
        assert.ok(inDays > 89.9 && inDays <= 90, `expires in 90 days: ${record.expiresAt}`);
        // A leads:write call is refused for the scope; a read works.
        assert.equal(await callApi(server, secret, 'POST', '/api/v1/leads', { name: 'Jane Smith' }), 403);
        assert.equal(await callApi(server, secret, 'GET', '/api/v1/leads'), 200);

        // A chosen date: the key expires at the end of that day.
        await page.locator(byTestId('create-key-button')).click();
        await page.locator(byTestId('create-name')).fill(`Until a date ${width}`);
        await page.locator(byTestId('create-expiry')).selectOption('date');
        const date = new Date(Date.now() + 10 * DAY_MS).toISOString().slice(0, 10);
        await page.locator(byTestId('create-expiry-date')).fill(date);
        await page.locator(byTestId('create-submit')).click();
        await page.locator(byTestId('new-key-dialog')).waitFor();
        await page.keyboard.press('Escape');
        const dated = rowNamed(page, `Until a date ${width}`);
        await dated.waitFor();
        const datedRecord = await keyRecord(await dated.getAttribute('data-key-id'));
        assert.equal(datedRecord.expiresAt, `${date}T23:59:59.000Z`, 'the end of the day (the browser runs in UTC)');
        assert.deepEqual([...datedRecord.scopes].sort(), ['leads:read', 'leads:write', 'me:read']);
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }

      // A member gets no rate-limit field (docs/api.md §9: the limit is the operator's).
      const asMember = await openPage(server, viewport);
      try {
        await signIn(server, asMember.page, member);
        await asMember.page.locator(byTestId('create-key-button')).click();
        await asMember.page.locator(byTestId('create-dialog')).waitFor();
        await asMember.page.locator(byTestId('scope-me:read')).waitFor();
        assert.equal(await asMember.page.locator(byTestId('create-rate')).isVisible(), false);
        await screenshot(asMember.page, `usage-create-dialog-member-${width}`);
      } finally {
        await asMember.close();
      }
    });
  }

  for (const [width, viewport] of WIDTHS) {
    test(`roll a key: choose the grace period, see the new secret once (${width})`, async () => {
      const rolling = await createKey(ownerToken, { name: `Rotating ${width}` });
      const membersToken = await loginToken(server, { email: member.email, password: member.password });
      const membersKey = await createKey(membersToken, { name: `Mia's key ${width}` });
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        const row = page.locator(`tr[data-key-id="${rolling.id}"]`);
        await row.waitFor();
        // Only the creator may roll: the owner sees no Roll on Mia's key, only Revoke.
        const others = page.locator(`tr[data-key-id="${membersKey.id}"]`);
        await others.waitFor();
        assert.equal(await others.locator(byTestId('roll-button')).count(), 0);
        assert.equal(await others.locator(byTestId('revoke-button')).count(), 1);

        await row.locator(byTestId('roll-button')).click();
        await page.locator(byTestId('roll-dialog')).waitFor();
        assert.equal(await activeTestId(page), 'roll-grace-86400');
        await page.locator(byTestId('roll-grace-3600')).check();
        await screenshot(page, `usage-roll-dialog-${width}`);
        await page.locator(byTestId('roll-confirm')).click();
        await page.locator(byTestId('new-key-dialog')).waitFor();
        const secret = (await page.locator(byTestId('new-key-value')).textContent()).trim();
        assert.match(secret, KEY_PATTERN);
        assert.notEqual(secret, rolling.key);
        await screenshot(page, `usage-rolled-key-${width}`);
        await page.locator(byTestId('new-key-done')).click();

        // Both secrets work during the grace period; the old one ends in an hour.
        assert.equal(await callApi(server, secret), 200);
        assert.equal(await callApi(server, rolling.key), 200);
        const old = await keyRecord(rolling.id);
        assert.ok(old.replacedBy);
        const endsIn = new Date(old.expiresAt).getTime() - Date.now();
        assert.ok(endsIn > 3_500_000 && endsIn <= 3_600_000, `grace of 1 hour: ${old.expiresAt}`);
        await page.locator(`${byTestId('key-row')}[data-key-id="${rolling.id}"] ${byTestId('key-rolled-info')}`).waitFor();
        assert.equal(await row.locator(byTestId('roll-button')).count(), 0, 'a key is rolled once');
        assert.equal(await page.locator(`tr[data-key-id="${old.replacedBy}"]`).count(), 1);

        // One key with two secrets: the old one right under its replacement, its end exact,
        // and a warning while something still sends it (the request above, once flushed).
        await new Promise((r) => setTimeout(r, 1500));
        await page.locator('label[for="filter-revoked"]').click();
        await page.locator(byTestId('keys-empty')).or(page.locator(byTestId('key-table'))).first().waitFor();
        await page.locator('label[for="filter-active"]').click();
        await row.locator(byTestId('key-old-secret-in-use')).waitFor();
        const order = await page.locator(byTestId('key-row')).evaluateAll((rows) => rows.map((r) => r.dataset.keyId));
        assert.equal(order.indexOf(rolling.id), order.indexOf(old.replacedBy) + 1, 'the old secret sits under the new');
        assert.equal(await row.locator(byTestId('key-old-secret')).count(), 1);
        assert.match(await row.locator(byTestId('key-rolled-info')).textContent(), /Rolled; this secret stops .+ UTC \(in 1 hour\)/);
        await screenshot(page, `usage-rolled-pair-${width}`, { fullPage: true });

        // The new secret's activity says where it came from, and leads there.
        await page.locator(`tr[data-key-id="${old.replacedBy}"] ${byTestId('key-name')}`).click();
        const from = page.getByRole('button', { name: 'rolled from the previous secret' });
        await from.waitFor();
        await from.click();
        await page.waitForFunction(
          (hint) => document.querySelector('[data-testid="detail-hint"]')?.textContent === hint,
          old.hint,
        );
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }

  test('keys unused for 30+ days are marked, with a short path to revoke', async () => {
    for (const [width, viewport] of WIDTHS) {
      const { page, close } = await openPage(server, viewport);
      try {
        // The page's clock runs 40 days ahead: every active key now looks idle.
        await page.clock.setFixedTime(new Date(Date.now() + 40 * DAY_MS));
        await signIn(server, page);
        const row = rowNamed(page, 'Integrator Webhooks');
        await row.waitFor();
        const marker = row.locator(byTestId('key-unused'));
        await marker.waitFor();
        assert.match(await marker.textContent(), /Unused for 30\+ days/);
        assert.match(await row.locator(byTestId('key-last-used')).textContent(), /40 days ago/);
        // A key whose expiry has passed by the page's clock says so, not "Expires soon".
        const until = await rowNamed(page, `Until a date ${width}`).locator(byTestId('key-expiry')).textContent();
        assert.match(until, /^Expired \d+ days ago$/);
        await screenshot(page, `usage-unused-${width}`, { fullPage: true });
        await marker.locator(byTestId('unused-revoke')).click();
        await page.locator(byTestId('revoke-dialog')).waitFor();
        assert.equal(await page.locator(byTestId('revoke-name')).textContent(), 'Integrator Webhooks');
        await page.keyboard.press('Escape');
        // Revoked keys are not "unused".
        assert.equal(await rowNamed(page, 'Old Sync').count(), 0, 'only active keys are listed by default');
      } finally {
        await close();
      }
    }
  });

  test('the small fixes: no mid-word wraps, no stale sign-out message, links to and from /docs', async () => {
    for (const [width, viewport] of WIDTHS) {
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        const row = rowNamed(page, 'Integrator Webhooks');
        await row.waitFor();
        await page.locator(`${byTestId('key-sparkline')} svg`).first().waitFor();
        await screenshot(page, `usage-list-after-flows-${width}`, { fullPage: true });
        if (width === 'desktop') {
          // Every word of every name stays whole (a word split over two lines has two boxes), and
          // each time stays on one line.
          const splitWords = await page.evaluate(() => {
            const split = [];
            for (const name of document.querySelectorAll('[data-testid="key-name"]')) {
              const text = name.firstChild;
              const pattern = /\S+/g;
              let match;
              while ((match = pattern.exec(text.textContent))) {
                const range = document.createRange();
                range.setStart(text, match.index);
                range.setEnd(text, match.index + match[0].length);
                const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                if (lines.size > 1) split.push(match[0]);
              }
            }
            return split;
          });
          assert.deepEqual(splitWords, [], 'no word of a name is broken over two lines');
          for (const time of await page.locator(`${byTestId('key-row')} time`).all()) {
            const rects = await time.evaluate((node) => node.getClientRects().length);
            assert.equal(rects, 1, `"${await time.textContent()}" wraps`);
          }
        }
        // Cross-link to the API reference.
        assert.equal(await page.locator(byTestId('docs-link')).getAttribute('href'), '/docs');

        // Sign out, then sign in as someone else: the old message is gone.
        await page.locator(byTestId('signout-button')).click();
        await page.locator(byTestId('signin-view')).waitFor();
        await page.locator(byTestId('signin-email')).fill(member.email);
        await page.locator(byTestId('signin-password')).fill(member.password);
        await page.locator(byTestId('signin-submit')).click();
        await page.locator(byTestId('app-view')).waitFor();
        await page.waitForTimeout(200);
        assert.doesNotMatch(await page.locator(byTestId('status-message')).textContent(), /signed out/);
        assert.match(await page.locator(byTestId('usage-scope')).textContent(), /Your keys/);
        await screenshot(page, `usage-member-view-${width}`, { fullPage: true });

        // /docs explains the browser guard up front and links back.
        await page.goto(`${server.base}/docs`);
        const guard = page.locator('#heffl-browser-guard');
        await guard.waitFor();
        assert.match(await guard.textContent(), /browser_use_blocked/);
        assert.match(await guard.textContent(), /curl/);
        assert.equal(await page.locator('#heffl-keys-link').getAttribute('href'), '/settings/developer');
        await page.locator('.swagger-ui .info').waitFor();
        await screenshot(page, `usage-docs-${width}`);
        // "Try it out" from /docs sends the key from this origin: the 403 does not blame the key.
        const answer = await page.evaluate(async (key) => {
          const response = await fetch('/api/v1/me', { headers: { 'x-api-key': key } });
          return { status: response.status, body: await response.json() };
        }, keys.integrator.key);
        assert.equal(answer.status, 403);
        assert.equal(answer.body.error.details.reason, 'browser_use_blocked');
        assert.doesNotMatch(answer.body.error.message, /revoke|roll/i);
        assert.match(answer.body.error.message, /Your key is fine/);
        assert.equal(await callApi(server, keys.integrator.key), 200, 'the key still works from a server');
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    }
  });

  test('keyboard only: create with scopes, open a key, roll it, come back', async () => {
    const { page, problems, close } = await openPage(server, DESKTOP);
    try {
      await page.goto(`${server.base}/settings/developer`);
      await page.keyboard.type(server.owner.email);
      await page.keyboard.press('Tab');
      await page.keyboard.type(server.owner.password);
      await page.keyboard.press('Enter');
      await page.locator(byTestId('app-view')).waitFor();

      // Create: name, untick a scope with Space, pick an expiry with the arrow keys, submit.
      await page.locator(byTestId('create-key-button')).focus();
      await page.keyboard.press('Enter');
      await page.locator(byTestId('create-dialog')).waitFor();
      await page.keyboard.type('Keyboard Key');
      await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'scope-me:read');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'scope-leads:write');
      await page.keyboard.press('Space');
      await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'create-expiry');
      await page.keyboard.press('ArrowDown');
      for (let i = 0; i < 5 && (await activeTestId(page)) !== 'create-submit'; i += 1) await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'create-submit');
      await page.keyboard.press('Enter');
      await page.locator(byTestId('new-key-dialog')).waitFor();
      await page.keyboard.press('Escape');
      await page.locator(byTestId('new-key-dialog')).waitFor({ state: 'hidden' });
      assert.equal(await activeTestId(page), 'create-key-button');
      const row = rowNamed(page, 'Keyboard Key');
      await row.waitFor();
      const record = await keyRecord(await row.getAttribute('data-key-id'));
      assert.deepEqual([...record.scopes].sort(), ['leads:read', 'me:read']);
      assert.ok(record.expiresAt, 'an expiry was chosen');

      // Open its detail with Enter on the name; Escape comes back to it.
      await row.locator(byTestId('key-name')).focus();
      await page.keyboard.press('Enter');
      await page.locator(byTestId('key-detail')).waitFor();
      assert.equal(await activeTestId(page), 'detail-name');
      await page.locator(byTestId('detail-day-chart')).waitFor();
      // Tab goes from the heading to the key's actions.
      await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'detail-roll');
      await page.keyboard.press('Enter');
      await page.locator(byTestId('roll-dialog')).waitFor();
      assert.equal(await activeTestId(page), 'roll-grace-86400');
      await page.keyboard.press('ArrowDown');
      assert.equal(await activeTestId(page), 'roll-grace-604800');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'roll-confirm');
      await page.keyboard.press('Enter');
      await page.locator(byTestId('new-key-dialog')).waitFor();
      assert.match((await page.locator(byTestId('new-key-value')).textContent()).trim(), KEY_PATTERN);
      await page.keyboard.press('Escape');
      await page.locator(byTestId('new-key-dialog')).waitFor({ state: 'hidden' });
      // The detail follows the key to its new secret.
      await page.locator(byTestId('detail-facts')).filter({ hasText: 'Replaces' }).waitFor();
      const old = await keyRecord(record.id);
      const grace = new Date(old.expiresAt).getTime() - Date.now();
      assert.ok(grace > 6.9 * DAY_MS, `7 days chosen with the arrow key: ${old.expiresAt}`);
      await page.keyboard.press('Escape');
      await page.locator(byTestId('key-table')).waitFor();
      assert.equal(await activeTestId(page), 'key-name');
      await screenshot(page, 'usage-keyboard-done');
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});

describe('Settings > Developer: what the key list shows', { timeout: 120_000 }, () => {
  test('policies under the name, a copyable id, expiry, an Expired filter and outcome colours', async () => {
    const soon = await createKey(ownerToken, {
      name: 'Expiring Soon',
      scopes: ['leads:read'],
      rateLimitPerMinute: 30,
      credits: { remaining: 1500 },
      expiresAt: new Date(Date.now() + 3 * DAY_MS).toISOString(),
    });
    const gone = await createKey(ownerToken, { name: 'Gone Stale', expiresAt: new Date(Date.now() + 1500).toISOString() });
    await new Promise((r) => setTimeout(r, 1600));
    const { page, problems, close } = await openPage(server, DESKTOP);
    try {
      await signIn(server, page);
      const row = rowNamed(page, 'Expiring Soon');
      await row.waitFor();
      assert.equal(await row.locator(byTestId('key-policy')).textContent(), 'leads:read · 30/min · 1,500 credits left');
      assert.equal(await rowNamed(page, 'Integrator Webhooks').locator(byTestId('key-policy')).textContent(), '3 scopes · no limit (default)');
      assert.match(await row.locator(byTestId('key-expiry')).textContent(), /Expires soon\s*Expires in 3 days/);
      assert.equal(await row.locator(byTestId('key-id')).getAttribute('title'), soon.id);
      await row.locator(byTestId('copy-key-id')).click();
      await page.waitForFunction(
        (text) => document.querySelector('[data-testid="status-message"]')?.textContent.includes(text),
        'Copied the id of Expiring Soon',
      );
      // A rate-limited day is drawn in the rate-limited colour, not as more of the same.
      const forms = rowNamed(page, 'Website Forms');
      await forms.locator(`${byTestId('key-sparkline')} rect.fill-rateLimited`).first().waitFor();
      assert.match(await forms.locator(`${byTestId('key-sparkline')} svg`).getAttribute('aria-label'), /2 rate limited/);
      // Expired keys have a filter of their own, and are not among the active ones.
      assert.equal(await rowNamed(page, 'Gone Stale').count(), 0);
      await page.locator('label[for="filter-expired"]').click();
      await rowNamed(page, 'Gone Stale').waitFor();
      assert.equal(await rowNamed(page, 'Expiring Soon').count(), 0);
      assert.equal(await rowNamed(page, 'Gone Stale').locator(byTestId('key-status')).textContent(), 'Expired');
      await screenshot(page, 'key-list-expired');
      assert.equal(gone.name, 'Gone Stale');
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});

/** No control cut off by the viewport or by a clipping ancestor, and no sideways scrolling. */
async function assertFits(page, where) {
  assert.deepEqual(await controlsCutOff(page), [], where);
  const sideways = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  assert.equal(sideways, 0, `no sideways scrolling: ${where}`);
}

/** Opens a dialog with `open`, checks the layout, and closes it with Escape. */
async function assertDialogFits(page, dialog, open, where) {
  await open();
  await page.locator(byTestId(dialog)).waitFor();
  await assertFits(page, `${dialog}, ${where}`);
  await page.keyboard.press('Escape');
  await page.locator(byTestId(dialog)).waitFor({ state: 'hidden' });
}

describe('Settings > Developer: the layout at every width', { timeout: 300_000 }, () => {
  for (const width of [360, 390, 768, 1024, 1280, 1440, 1920]) {
    test(`nothing is cut off or off-screen at ${width} px: the list, a key, and each dialog`, async () => {
      const { page, problems, close } = await openPage(server, { width, height: 900 });
      try {
        await signIn(server, page);
        await page.locator('label[for="filter-all"]').click();
        await rowNamed(page, 'Leaked Zapier').waitFor();
        await screenshot(page, `key-list-${width}`, { fullPage: true });
        await assertFits(page, `the list at ${width} px`);
        const where = `${width} px`;
        await assertDialogFits(page, 'create-dialog', () => page.locator(byTestId('create-key-button')).click(), where);
        await assertDialogFits(page, 'webhook-dialog', () => page.locator(byTestId('webhook-add-button')).click(), where);
        await assertDialogFits(page, 'password-dialog', () => page.locator(byTestId('password-button')).click(), where);
        await assertDialogFits(page, 'workspace-dialog', () => page.locator(byTestId('workspace-new-button')).click(), where);
        const hook = page.locator(byTestId('webhook-item')).first();
        await hook.waitFor();
        await assertDialogFits(page, 'webhook-secret-dialog', () => hook.locator(byTestId('webhook-roll')).click(), where);
        await assertDialogFits(page, 'webhook-delete-dialog', () => hook.locator(byTestId('webhook-delete')).click(), where);
        await assertDialogFits(
          page,
          'member-remove-dialog',
          () => page.locator(byTestId('person'), { hasText: member.email }).locator(byTestId('person-remove')).click(),
          where,
        );
        await assertDialogFits(
          page,
          'new-key-dialog',
          async () => {
            await page.locator(byTestId('create-key-button')).click();
            await page.locator(byTestId('create-name')).fill(`Layout ${width}`);
            await page.locator(byTestId('create-submit')).click();
          },
          where,
        );
        await assertDialogFits(
          page,
          'revoke-dialog',
          () => rowNamed(page, 'Integrator Webhooks').locator(byTestId('revoke-button')).click(),
          where,
        );

        await rowNamed(page, 'Integrator Webhooks').locator(byTestId('key-name')).click();
        await page.locator(byTestId('detail-day-chart')).waitFor();
        await screenshot(page, `key-detail-${width}`, { fullPage: true });
        await assertFits(page, `a key at ${width} px`);
        await assertDialogFits(page, 'edit-dialog', () => page.locator(byTestId('detail-edit')).click(), where);
        await assertDialogFits(page, 'roll-dialog', () => page.locator(byTestId('detail-roll')).click(), where);
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }
});

const DETAIL_WIDTHS = [...WIDTHS, ['1024', { width: 1024, height: 900 }]];

describe('Settings > Developer: a key with policies', { timeout: 120_000 }, () => {
  for (const [width, viewport] of DETAIL_WIDTHS) {
    test(`its policies are shown, and it can be paused and resumed (${width})`, async () => {
      const key = await createKey(ownerToken, {
        name: `Customer key ${width}`,
        description: 'Nightly export for Contoso',
        allowedIps: ['127.0.0.1', '2001:db8:42::/48'],
        externalId: 'cus_4QX2',
        meta: { plan: 'pro', seats: 12, region: 'eu-central-1', note: 'a long value that must wrap rather than widen the card' },
        credits: { remaining: 5000, refill: { amount: 5000, interval: 'monthly', day: 1 } },
      });
      assert.equal(await callApi(server, key.key), 200);
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        await rowNamed(page, `Customer key ${width}`).locator(byTestId('key-name')).click();
        await page.locator(byTestId('key-detail')).waitFor();
        const facts = {
          'detail-description': /Nightly export for Contoso/,
          'detail-allowed-ips': /127\.0\.0\.1\/32\s+2001:db8:42::\/48/,
          'detail-external-id': /cus_4QX2/,
          'detail-meta': /"plan":"pro"/,
          'detail-credits': /left · refilled to 5,000 monthly on day 1/,
        };
        for (const [id, pattern] of Object.entries(facts)) {
          assert.match(await page.locator(byTestId(id)).textContent(), pattern, id);
        }

        await page.locator(byTestId('detail-pause')).click();
        await page.locator(byTestId('detail-paused')).waitFor();
        assert.equal(await page.locator(`${byTestId('key-detail')} ${byTestId('key-status')}`).textContent(), 'Paused');
        assert.equal(await page.locator(byTestId('detail-pause')).textContent(), 'Resume key');
        // Focus comes back to the (re-rendered) button once the view is read back.
        await page.waitForFunction(() => document.activeElement?.dataset.testid === 'detail-pause');
        assert.equal(await callApi(server, key.key), 401, 'a paused key is refused');
        await screenshot(page, `policies-paused-${width}`, { fullPage: true });
        assert.deepEqual(await controlsCutOff(page), [], `at ${width}`);

        await page.locator(byTestId('detail-pause')).click();
        await page.waitForFunction(
          (selector) => document.querySelector(selector)?.textContent === 'Pause key',
          byTestId('detail-pause'),
        );
        assert.equal(await page.locator(byTestId('detail-paused')).count(), 0);
        assert.equal(await callApi(server, key.key), 200, 'resumed');
        const events = await page.locator(byTestId('detail-event')).allTextContents();
        assert.ok(events.some((e) => e.startsWith('Edited')), JSON.stringify(events));
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }
});

describe('Settings > Developer: editing a key', { timeout: 120_000 }, () => {
  for (const [width, viewport] of DETAIL_WIDTHS) {
    test(`name, description, allowed IPs, external id and metadata, with the server's refusals in words (${width})`, async () => {
      const key = await createKey(ownerToken, { name: `Editable ${width}` });
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        await rowNamed(page, `Editable ${width}`).locator(byTestId('key-name')).click();
        await page.locator(byTestId('key-detail')).waitFor();
        await page.locator(byTestId('detail-edit')).click();
        const dialog = page.locator(byTestId('edit-dialog'));
        await dialog.waitFor();
        assert.equal(await activeTestId(page), 'edit-name');
        await page.locator(byTestId('edit-description')).fill('Export for Contoso');
        // Host bits under the prefix: the server's message, naming the entry, in words.
        await page.locator(byTestId('edit-allowed-ips')).fill('127.0.0.1\n10.0.0.1/8');
        await page.locator(byTestId('edit-external-id')).fill('cus_77');
        await page.locator(byTestId('edit-meta')).fill('{"tier": "gold"}');
        await screenshot(page, `edit-dialog-${width}`, { fullPage: true });
        assert.deepEqual(await controlsCutOff(page), [], `the dialog at ${width}`);
        await page.locator(byTestId('edit-submit')).click();
        const error = page.locator(byTestId('edit-error'));
        await error.waitFor();
        assert.match(await error.textContent(), /Allowed IPs entry 1: '10\.0\.0\.1\/8' has host bits set; did you mean 10\.0\.0\.0\/8\?/);
        // Nothing was applied.
        assert.equal((await keyRecord(key.id)).description, null);
        // Metadata that is not an object is caught before it is sent.
        await page.locator(byTestId('edit-allowed-ips')).fill('127.0.0.1\n10.0.0.0/8');
        await page.locator(byTestId('edit-meta')).fill('[1, 2]');
        await page.locator(byTestId('edit-submit')).click();
        await page.waitForFunction((selector) => /JSON object/.test(document.querySelector(selector)?.textContent || ''), byTestId('edit-error'));
        await page.locator(byTestId('edit-meta')).fill('{"tier": "gold"}');
        await page.locator(byTestId('edit-submit')).click();
        await page.waitForFunction((selector) => !document.querySelector(selector)?.open, '#edit-dialog');
        await page.waitForFunction(
          (selector) => /cus_77/.test(document.querySelector(selector)?.textContent || ''),
          byTestId('detail-external-id'),
        );
        assert.match(await page.locator(byTestId('detail-allowed-ips')).textContent(), /127\.0\.0\.1\/32\s+10\.0\.0\.0\/8/);
        assert.match(await page.locator(byTestId('detail-meta')).textContent(), /"tier":"gold"/);
        assert.match(await page.locator(byTestId('detail-description')).textContent(), /Export for Contoso/);
        const record = await keyRecord(key.id);
        assert.deepEqual([record.externalId, record.meta], ['cus_77', { tier: 'gold' }]);
        assert.equal(await callApi(server, key.key), 200, 'this client is on the list');
        await screenshot(page, `edited-key-${width}`, { fullPage: true });
        assert.deepEqual(await controlsCutOff(page), [], `the detail view at ${width}`);
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }
});

describe('Settings > Developer: editing what a key may do and spend', { timeout: 120_000 }, () => {
  for (const [width, viewport] of WIDTHS) {
    test(`scopes, expiry, rate limit and credits with a refill, by the owner (${width})`, async () => {
      const key = await createKey(ownerToken, { name: `Policies ${width}` });
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        await rowNamed(page, `Policies ${width}`).locator(byTestId('key-name')).click();
        await page.locator(byTestId('detail-edit')).click();
        await page.locator(byTestId('edit-dialog')).waitFor();
        await page.locator(byTestId('edit-scope-leads:write')).uncheck();
        const day = new Date(Date.now() + 10 * DAY_MS);
        await page.locator(byTestId('edit-expiry')).fill(day.toISOString().slice(0, 10));
        await page.locator(byTestId('edit-rate')).fill('20');
        await page.locator(byTestId('edit-credits-budget')).check();
        await page.locator(byTestId('edit-credits-remaining')).fill('500');
        await page.locator(byTestId('edit-credits-refill')).selectOption('monthly');
        await page.locator(byTestId('edit-credits-amount')).fill('1000');
        await page.locator(byTestId('edit-credits-day')).fill('15');
        await screenshot(page, `edit-policies-${width}`, { fullPage: true });
        assert.deepEqual(await controlsCutOff(page), [], `the dialog at ${width}`);
        await page.locator(byTestId('edit-submit')).click();
        await page.waitForFunction((selector) => !document.querySelector(selector)?.open, '#edit-dialog');
        const record = await keyRecord(key.id);
        assert.deepEqual(record.scopes, ['me:read', 'leads:read']);
        assert.equal(record.rateLimitPerMinute, 20);
        assert.equal(record.credits.remaining, 500);
        assert.deepEqual(record.credits.refill, { amount: 1000, interval: 'monthly', day: 15 });
        const left = new Date(record.expiresAt).getTime() - Date.now();
        assert.ok(left > 9.5 * DAY_MS && left < 11 * DAY_MS, record.expiresAt);
        // Opening the dialog again and saving without a change changes nothing.
        await page.locator(byTestId('detail-edit')).click();
        await page.locator(byTestId('edit-submit')).click();
        await page.waitForFunction((selector) => !document.querySelector(selector)?.open, '#edit-dialog');
        assert.deepEqual(await keyRecord(key.id), record);
        // Back to unlimited credits.
        await page.locator(byTestId('detail-edit')).click();
        await page.locator(byTestId('edit-credits-unlimited')).check();
        await page.locator(byTestId('edit-submit')).click();
        await page.waitForFunction((selector) => !document.querySelector(selector)?.open, '#edit-dialog');
        assert.equal((await keyRecord(key.id)).credits, null);
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }

  test("a member may shorten their key's life but not extend it, and sees credits without changing them", async () => {
    const memberToken = await loginToken(server, { email: member.email, password: member.password });
    const created = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/api-keys`, memberToken, {
      name: 'Mia Limited',
      expiresAt: new Date(Date.now() + 5 * DAY_MS).toISOString(),
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { page, problems, close } = await openPage(server, DESKTOP);
    try {
      await signIn(server, page, member);
      await rowNamed(page, 'Mia Limited').locator(byTestId('key-name')).click();
      await page.locator(byTestId('detail-edit')).click();
      await page.locator(byTestId('edit-dialog')).waitFor();
      assert.equal(await page.locator(byTestId('edit-credits-budget')).isDisabled(), true);
      assert.match(await page.locator('#edit-expiry-hint').textContent(), /only owners and admins move it later/);
      await page.locator(byTestId('edit-expiry')).fill('');
      await page.locator(byTestId('edit-submit')).click();
      const error = page.locator(byTestId('edit-error'));
      await error.waitFor();
      assert.match(await error.textContent(), /Only owners and admins can move a key's expiresAt later or remove it/);
      const record = await appApi(server, 'GET', `/workspaces/${server.workspaceId}/api-keys/${created.body.id}`, memberToken);
      assert.equal(record.body.expiresAt, created.body.expiresAt, 'nothing was applied');
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});

describe('Settings > Developer: dialog buttons stay in sight', { timeout: 60_000 }, () => {
  for (const viewport of [{ width: 1280, height: 800 }, PHONE]) {
    test(`the create dialog's buttons are on screen with "On a date…" at ${viewport.width}×${viewport.height}`, async () => {
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        await page.locator(byTestId('create-key-button')).click();
        await page.locator(byTestId('create-dialog')).waitFor();
        await page.locator(byTestId('create-expiry')).selectOption('date');
        for (const id of ['create-submit', 'create-cancel']) {
          const box = await page.locator(byTestId(id)).boundingBox();
          assert.ok(box, id);
          assert.ok(box.y >= 0 && box.y + box.height <= viewport.height, `${id} at ${JSON.stringify(box)}`);
        }
        await screenshot(page, `create-dialog-date-${viewport.width}`);
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }
});

describe('Settings > Developer: an empty workspace and failures', { timeout: 120_000 }, () => {
  test('a workspace without keys offers the first key and the first request to copy', async () => {
    const empty = await appApi(server, 'POST', '/workspaces', ownerToken, { name: 'Empty Co' });
    assert.equal(empty.status, 201);
    const { page, problems, close } = await openPage(server, PHONE);
    try {
      await signIn(server, page);
      await page.locator(byTestId('workspace-select')).selectOption({ label: 'Empty Co' });
      const guide = page.locator(byTestId('first-key'));
      await guide.waitFor();
      assert.equal(
        await page.locator(byTestId('first-request')).textContent(),
        `curl ${server.base}/api/v1/me \\\n  -H "x-api-key: $HEFFL_API_KEY"`,
      );
      await page.locator(byTestId('usage-none')).waitFor();
      await screenshot(page, 'empty-workspace-phone', { fullPage: true });
      await page.locator(byTestId('first-key-button')).click();
      await page.locator(byTestId('create-dialog')).waitFor();
      assert.equal(await activeTestId(page), 'create-name');
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });

  test('a list or a key that cannot be read says so in place, with Retry, and shows nothing stale', async () => {
    const { page, close } = await openPage(server, DESKTOP);
    try {
      await signIn(server, page);
      await rowNamed(page, 'Integrator Webhooks').waitFor();
      // The server stops answering the list: "All" shows the error, not the Active rows.
      await page.route('**/api-keys?status=all', (route) => route.abort('connectionrefused'));
      await page.locator('label[for="filter-all"]').click();
      await page.locator(byTestId('keys-error')).waitFor();
      assert.match(await page.locator(byTestId('keys-error')).textContent(), /Could not load the keys: Can't reach the server/);
      assert.equal(await page.locator(byTestId('key-row')).count(), 0, 'no stale rows under All');
      await screenshot(page, 'keys-failed-desktop');
      await page.unroute('**/api-keys?status=all');
      await page.locator(byTestId('keys-retry')).click();
      await rowNamed(page, 'Leaked Zapier').waitFor();

      // The key's record fails: one error with Retry, no hint, no empty charts.
      await page.route(`**/api-keys/${keys.integrator.id}`, (route) =>
        route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'The database did not answer in time; try again.' } }) }),
      );
      await rowNamed(page, 'Integrator Webhooks').locator(byTestId('key-name')).click();
      await page.locator(byTestId('detail-error')).waitFor();
      assert.match(await page.locator(byTestId('detail-error')).textContent(), /Could not load the key: The database did not answer in time/);
      assert.equal(await page.locator(byTestId('detail-hint')).textContent(), '');
      assert.equal(await page.locator(byTestId('detail-chart-days')).isVisible(), false);
      await screenshot(page, 'detail-failed-desktop');
      await page.unroute(`**/api-keys/${keys.integrator.id}`);
      await page.locator(byTestId('detail-retry')).click();
      await page.locator(byTestId('detail-day-chart')).waitFor();
      assert.equal(await page.locator(byTestId('detail-error')).count(), 0);
      assert.match(await page.locator(byTestId('detail-hint')).textContent(), /^hk_live_/);
    } finally {
      await close();
    }
  });
});
