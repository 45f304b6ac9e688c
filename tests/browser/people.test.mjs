// Settings > Developer: the workspace's people and a new workspace, at 1280 and 390 px: an owner
// changes a role and removes a member (whose key is revoked with them); an admin sees why the
// owner's row is locked; members see no people; anyone creates a workspace and lands in it.
// Screenshots go to target/screenshots/people-*.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  PHONE,
  appApi,
  byTestId,
  callApi,
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

/** Invites `email` with `role` and accepts as them; their credentials. */
async function join(email, role, name) {
  const password = `a long passphrase for ${name}`;
  const invited = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/invitations`, ownerToken, { email, role });
  assert.equal(invited.status, 201, JSON.stringify(invited.body));
  const accepted = await appApi(server, 'POST', '/invitations/accept', null, { token: invited.body.token, name, password });
  assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
  return { email, password };
}

function person(page, name) {
  return page.locator(byTestId('person'), { has: page.locator(byTestId('person-name'), { hasText: name }) });
}

before(async () => {
  server = await startServer({ HEFFL_RATE_LIMIT_PER_MINUTE: '0' });
  ownerToken = await loginToken(server, server.owner);
});

after(async () => {
  if (server) await server.stop();
});

describe('Settings > Developer: people', { timeout: 180_000 }, () => {
  for (const [width, viewport] of WIDTHS) {
    test(`an owner changes a role and removes a member, whose keys go with them (${width})`, async () => {
      const mia = await join(`mia-${width}@acme.test`, 'member', `Mia ${width}`);
      const miaToken = await loginToken(server, mia);
      const miaKey = await appApi(server, 'POST', `/workspaces/${server.workspaceId}/api-keys`, miaToken, { name: `Mia's sync ${width}` });
      assert.equal(miaKey.status, 201);
      const { page, problems, close } = await openPage(server, viewport);
      try {
        await signIn(server, page);
        const card = page.locator(byTestId('people-card'));
        const mine = person(page, 'Olive Owner');
        await mine.waitFor();
        assert.equal(await mine.locator(byTestId('person-role')).isDisabled(), true);
        assert.match(await mine.locator(byTestId('person-note')).textContent(), /This is you/);

        const row = person(page, `Mia ${width}`);
        await row.locator(byTestId('person-role')).selectOption('viewer');
        await page.waitForFunction(
          (text) => document.querySelector('[data-testid="status-message"]')?.textContent.includes(text),
          `Mia ${width} is now viewer.`,
        );
        const members = await appApi(server, 'GET', `/workspaces/${server.workspaceId}/members`, ownerToken);
        assert.equal(members.body.items.find((m) => m.email === mia.email).role, 'viewer');
        await card.scrollIntoViewIfNeeded();
        await screenshot(page, `people-${width}`, { fullPage: true });
        assert.deepEqual(await controlsCutOff(page), [], `at ${width}`);

        await row.locator(byTestId('person-remove')).click();
        const dialog = page.locator(byTestId('member-remove-dialog'));
        await dialog.waitFor();
        assert.match(await dialog.textContent(), /every API key they created in it is revoked/);
        await page.locator(byTestId('member-remove-confirm')).click();
        await row.waitFor({ state: 'detached' });
        assert.equal(await callApi(server, miaKey.body.key), 401, "the removed member's key is revoked");
        assert.deepEqual(problems, []);
      } finally {
        await close();
      }
    });
  }

  test("an admin sees why an owner's row is locked, and cannot make owners", async () => {
    const ada = await join('ada@acme.test', 'admin', 'Ada Admin');
    await join('vic@acme.test', 'viewer', 'Vic Viewer');
    const { page, problems, close } = await openPage(server, DESKTOP);
    try {
      await signIn(server, page, ada);
      const owner = person(page, 'Olive Owner');
      await owner.waitFor();
      assert.equal(await owner.locator(byTestId('person-role')).isDisabled(), true);
      assert.equal(await owner.locator(byTestId('person-remove')).isDisabled(), true);
      assert.equal(await owner.locator(byTestId('person-note')).textContent(), 'Only owners change or remove an owner.');
      const vic = person(page, 'Vic Viewer');
      assert.equal(await vic.locator(`${byTestId('person-role')} option[value="owner"]`).isDisabled(), true);
      await vic.locator(byTestId('person-role')).selectOption('member');
      await page.waitForFunction(
        (text) => document.querySelector('[data-testid="status-message"]')?.textContent.includes(text),
        'Vic Viewer is now member.',
      );
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
    // The viewer, now a member, sees no people at all.
    const member = await openPage(server, DESKTOP);
    try {
      await signIn(server, member.page, { email: 'vic@acme.test', password: 'a long passphrase for Vic Viewer' });
      await member.page.waitForFunction(
        (selector) => /Member/.test(document.querySelector(selector)?.textContent || ''),
        byTestId('workspace-role'),
      );
      assert.equal(await member.page.locator(byTestId('people-card')).isHidden(), true);
    } finally {
      await member.close();
    }
  });

  test('anyone creates a workspace and lands in it as its owner', async () => {
    const { page, problems, close } = await openPage(server, PHONE);
    try {
      await signIn(server, page);
      await page.locator(byTestId('workspace-new-button')).click();
      await page.locator(byTestId('workspace-dialog')).waitFor();
      await page.locator(byTestId('workspace-submit')).click();
      await page.locator(byTestId('workspace-error')).waitFor();
      assert.match(await page.locator(byTestId('workspace-error')).textContent(), /Name must not be blank/);
      await page.locator(byTestId('workspace-name')).fill('Acme Staging');
      assert.equal(await page.locator(byTestId('workspace-error')).isHidden(), true, 'the refusal goes once the name changes');
      await screenshot(page, 'people-new-workspace-phone');
      await page.locator(byTestId('workspace-submit')).click();
      await page.waitForFunction(
        () => document.querySelector('[data-testid="workspace-select"] option:checked')?.textContent === 'Acme Staging',
      );
      assert.match(await page.locator(byTestId('workspace-role')).textContent(), /Owner/);
      await page.locator(byTestId('first-key')).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});
