// Invitations and the password in the Settings > Developer page (docs/api.md §10), in Debian's
// Chromium against a real `heffl-api serve` on a fresh SQLite file. Needs target/debug/heffl-api.
// Screenshots (1280 and 390 px wide) go to target/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  DESKTOP,
  PHONE,
  SCREENSHOTS,
  byTestId,
  startServer,
  appApi as serverApi,
  loginToken as serverLogin,
  openPage as openServerPage,
} from './harness.mjs';

let server = null;
let owner = null;

const openPage = (viewport) => openServerPage(server, viewport);
const appApi = (method, route, token, body) => serverApi(server, method, route, token, body);
const loginToken = (email, password) => serverLogin(server, { email, password });
const cli = (args, input) => server.cli(args, input);

async function invite(email, role) {
  const token = await loginToken(owner.email, owner.password);
  const { status, body } = await appApi('POST', `/workspaces/${owner.workspaceId}/invitations`, token, { email, role });
  assert.equal(status, 201, JSON.stringify(body));
  return body.token;
}

const link = (token) => `${server.base}/settings/developer#invitation=${token}`;

before(async () => {
  server = await startServer({ HEFFL_LOGIN_ATTEMPTS_PER_MINUTE: '60' });
  owner = { ...server.owner, workspaceId: server.workspaceId };
});

after(() => server?.stop());

describe('an invitation link', () => {
  test('a new person sees the workspace and role, creates an account and lands in it', async () => {
    const token = await invite('new.person@acme.test', 'member');
    const { page, problems, requests, close } = await openPage(DESKTOP);
    try {
      await page.goto(link(token));
      const summary = page.locator(byTestId('invitation-summary'));
      await assert.doesNotReject(summary.filter({ hasText: 'Acme' }).waitFor());
      assert.match(await summary.innerText(), /Olive Owner invited new\.person@acme\.test to join Acme as a Member/);
      // The token left the address bar at once, and went nowhere but request bodies.
      assert.equal(await page.evaluate(() => location.hash), '');
      assert.ok(!page.url().includes(token), page.url());
      assert.ok(await page.locator(byTestId('signin-view')).isHidden(), 'the plain sign-in form is out of the way');
      assert.equal(await page.locator(byTestId('invitation-create-email')).inputValue(), 'new.person@acme.test');
      await page.screenshot({ path: path.join(SCREENSHOTS, 'invitation-new-account-1280.png'), fullPage: true });

      // Too short a password is caught before it is sent.
      await page.locator(byTestId('invitation-name')).fill('Nia New');
      await page.locator(byTestId('invitation-password')).fill('short');
      await page.locator(byTestId('invitation-create-submit')).click();
      await page.locator(byTestId('invitation-create-error')).filter({ hasText: '12 characters' }).waitFor();

      await page.locator(byTestId('invitation-password')).fill('a long enough passphrase');
      await page.locator(byTestId('invitation-create-submit')).click();
      await page.locator(byTestId('app-view')).waitFor({ state: 'visible' });
      assert.equal(await page.locator(byTestId('workspace-select')).locator('option:checked').innerText(), 'Acme');
      assert.match(await page.locator(byTestId('workspace-role')).innerText(), /member/i);
      assert.ok(await page.locator(byTestId('invitation-view')).isHidden());
      assert.ok(!requests.some((url) => url.includes(token)), `the token was in a URL: ${requests.join(', ')}`);
      assert.deepEqual(problems, []);

      // The link is used up.
      const again = await appApi('POST', '/invitations/lookup', null, { token });
      assert.equal(again.status, 404);
    } finally {
      await close();
    }
  });

  test('on a phone, the invitation fits the screen', async () => {
    const token = await invite('phone.person@acme.test', 'viewer');
    const { page, problems, close } = await openPage(PHONE);
    try {
      await page.goto(link(token));
      await page.locator(byTestId('invitation-summary')).filter({ hasText: 'Acme' }).waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'invitation-new-account-390.png'), fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });

  test('someone with an account signs in and joins; signed in already, they just join', async () => {
    const password = 'existing person password';
    await cli(['users', 'create', '--email', 'ed@acme.test', '--name', 'Ed Existing', '--password-stdin'], `${password}\n`);
    const first = await invite('ed@acme.test', 'admin');
    const { page, problems, close } = await openPage(DESKTOP);
    try {
      await page.goto(link(first));
      await page.locator(byTestId('invitation-signin-form')).waitFor({ state: 'visible' });
      // Creating an account for an email that has one says to sign in instead.
      await page.locator(byTestId('invitation-name')).fill('Impostor');
      await page.locator(byTestId('invitation-password')).fill('some other long password');
      await page.locator(byTestId('invitation-create-submit')).click();
      await page.locator(byTestId('invitation-create-error')).filter({ hasText: 'already has an account' }).waitFor();

      await page.locator(byTestId('invitation-signin-password')).fill(password);
      await page.locator(byTestId('invitation-signin-submit')).click();
      await page.locator(byTestId('app-view')).waitFor({ state: 'visible' });
      assert.match(await page.locator(byTestId('workspace-role')).innerText(), /admin/i);

      // A second workspace invites Ed; he is signed in, so the page offers "Join".
      const ownerToken = await loginToken(owner.email, owner.password);
      const beta = await appApi('POST', '/workspaces', ownerToken, { name: 'Beta' });
      const second = await appApi('POST', `/workspaces/${beta.body.id}/invitations`, ownerToken, {
        email: 'ED@acme.test',
        role: 'viewer',
      });
      await page.goto('about:blank');
      await page.goto(link(second.body.token));
      const join = page.locator(byTestId('invitation-join'));
      await join.waitFor({ state: 'visible' });
      assert.equal(await join.innerText(), 'Join Beta');
      await page.screenshot({ path: path.join(SCREENSHOTS, 'invitation-join-1280.png'), fullPage: true });
      await join.click();
      await page.locator(byTestId('app-view')).waitFor({ state: 'visible' });
      assert.equal(await page.locator(byTestId('workspace-select')).locator('option:checked').innerText(), 'Beta');
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });

  test('a dead link says so, and nothing else is offered', async () => {
    const { page, close } = await openPage(DESKTOP);
    try {
      await page.goto(link('0'.repeat(64)));
      const notice = page.locator(byTestId('invitation-notice'));
      await notice.filter({ hasText: 'not valid' }).waitFor();
      assert.ok(await page.locator(byTestId('invitation-create-form')).isHidden());
      assert.ok(await page.locator(byTestId('invitation-signin-form')).isHidden());
      await page.locator(byTestId('invitation-dismiss')).click();
      await page.locator(byTestId('signin-view')).waitFor({ state: 'visible' });
    } finally {
      await close();
    }
  });
});

describe('change password', () => {
  test('a wrong current password is refused; the right one changes it and ends other sessions', async () => {
    const password = 'patricia old password';
    await cli(['users', 'create', '--email', 'pat@acme.test', '--name', 'Pat', '--password-stdin'], `${password}\n`);
    const otherSession = await loginToken('pat@acme.test', password);
    const { page, problems, close } = await openPage(PHONE);
    try {
      await page.goto(`${server.base}/settings/developer`);
      await page.locator(byTestId('signin-email')).fill('pat@acme.test');
      await page.locator(byTestId('signin-password')).fill(password);
      await page.locator(byTestId('signin-submit')).click();
      await page.locator(byTestId('app-view')).waitFor({ state: 'visible' });
      await page.locator(byTestId('password-button')).click();
      const dialog = page.locator(byTestId('password-dialog'));
      await dialog.waitFor({ state: 'visible' });
      await page.locator(byTestId('password-current')).fill('not my password');
      await page.locator(byTestId('password-new')).fill('patricia new password');
      await page.locator(byTestId('password-submit')).click();
      await page.locator(byTestId('password-error')).filter({ hasText: 'not your current password' }).waitFor();
      await page.screenshot({ path: path.join(SCREENSHOTS, 'change-password-390.png') });

      await page.locator(byTestId('password-current')).fill(password);
      await page.locator(byTestId('password-submit')).click();
      await dialog.waitFor({ state: 'hidden' });
      await page.locator(byTestId('status-message')).filter({ hasText: 'password was changed' }).waitFor();
      assert.equal((await appApi('GET', '/session', otherSession)).status, 401);
      await loginToken('pat@acme.test', 'patricia new password');
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});
