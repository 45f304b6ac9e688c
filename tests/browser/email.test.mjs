// Email in the Settings > Developer page (docs/api.md §10), in Debian's Chromium against a real
// `heffl-api serve` whose HEFFL_SMTP_URL is a sink started here: "Forgot password?" from the
// sign-in page to the emailed link to signing in with the new password, and invitations that
// say "Sent to …" and offer Resend. And, on a server without email, what the page says instead.
// Screenshots (1280 and 390 px wide) go to target/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  PHONE,
  byTestId,
  startServer,
  appApi,
  loginToken,
  openPage,
  screenshot,
  signIn,
} from './harness.mjs';
import { linkIn, startSmtpSink } from './smtp_sink.mjs';

let sink = null;
let server = null;

before(async () => {
  sink = await startSmtpSink();
  server = await startServer({
    HEFFL_SMTP_URL: sink.url,
    HEFFL_SMTP_FROM: 'heffl <noreply@acme.test>',
    HEFFL_PUBLIC_URL: (base) => base,
  });
});

after(async () => {
  await server?.stop();
  await sink?.stop();
});

describe('forgot password', () => {
  test('the emailed link sets a new password, leaves the address bar at once, and signs in', async () => {
    const { page, problems, requests, close } = await openPage(server, DESKTOP);
    try {
      await page.goto(`${server.base}/settings/developer`);
      await page.locator(byTestId('signin-email')).fill(server.owner.email);
      await page.locator(byTestId('forgot-button')).click();
      assert.equal(await page.locator(byTestId('forgot-email')).inputValue(), server.owner.email);
      assert.ok(await page.locator(byTestId('forgot-operator')).isHidden());
      await page.locator(byTestId('forgot-submit')).click();
      const sent = page.locator(byTestId('forgot-sent'));
      await sent.filter({ hasText: 'on its way' }).waitFor();
      assert.match(await sent.innerText(), /If owner@acme\.test has an account/);
      await screenshot(page, 'forgot-password-sent-1280', { fullPage: true });

      const mail = await sink.waitFor(server.owner.email);
      const link = linkIn(mail, 'reset');
      const token = link.split('#reset=')[1];
      // The link names this server (HEFFL_PUBLIC_URL); open it as a person would.
      assert.ok(link.startsWith(`${server.base}/settings/developer#reset=`), link);
      await page.goto(link);
      await page.locator(byTestId('reset-view')).waitFor();
      assert.equal(await page.evaluate(() => location.hash), '');
      assert.ok(await page.locator(byTestId('signin-view')).isHidden());
      await page.locator(byTestId('reset-password')).fill('short');
      await page.locator(byTestId('reset-submit')).click();
      await page.locator(byTestId('reset-error')).filter({ hasText: '12 characters' }).waitFor();
      await screenshot(page, 'reset-password-1280', { fullPage: true });
      await page.locator(byTestId('reset-password')).fill('a brand new passphrase');
      await page.locator(byTestId('reset-submit')).click();

      const notice = page.locator(byTestId('signin-notice'));
      await notice.filter({ hasText: 'Your password was changed' }).waitFor();
      await screenshot(page, 'reset-password-done-1280', { fullPage: true });
      await page.locator(byTestId('signin-email')).fill(server.owner.email);
      await page.locator(byTestId('signin-password')).fill('a brand new passphrase');
      await page.locator(byTestId('signin-submit')).click();
      await page.locator(byTestId('app-view')).waitFor();

      assert.ok(!requests.some((url) => url.includes(token)), `the token was in a URL: ${requests.join(', ')}`);
      assert.deepEqual(problems, []);
      // Used once, the link opens nothing.
      const again = await appApi(server, 'POST', '/auth/password-reset/confirm', null, { token, password: 'yet another passphrase' });
      assert.equal(again.status, 404);
      assert.equal(again.body.error.details.reason, 'reset_token_not_found');
      server.owner.password = 'a brand new passphrase';
    } finally {
      await close();
    }
  });
});

describe('invitations by email', () => {
  test('the inviter sees "Sent to …", never the link, and can resend', async () => {
    const { page, problems, close } = await openPage(server, DESKTOP);
    try {
      await signIn(server, page);
      const card = page.locator(byTestId('invites-card'));
      await card.waitFor();
      await page.locator(byTestId('invite-email')).fill('mia@acme.test');
      await page.locator(byTestId('invite-role')).selectOption('admin');
      await page.locator(byTestId('invite-submit')).click();
      await page.locator(byTestId('invite-result')).filter({ hasText: 'Invited mia@acme.test: the link is emailed to that address only' }).waitFor();
      assert.equal(await page.locator(byTestId('invite-link')).count(), 0, 'no link is shown with email on');
      const state = page.locator(byTestId('invite-state')).first();
      await state.filter({ hasText: /^Sent to mia@acme\.test/ }).waitFor();
      const first = linkIn(await sink.waitFor('mia@acme.test'), 'invitation');
      assert.match((await sink.waitFor('mia@acme.test')).text, /Olive Owner \(owner@acme\.test\) invited you/);
      await card.scrollIntoViewIfNeeded();
      await screenshot(page, 'invitations-sent-1280', { fullPage: true });

      await page.locator(byTestId('invite-resend')).first().click();
      await page.locator(byTestId('invite-result')).filter({ hasText: 'previous one no longer works' }).waitFor();
      const second = linkIn(await sink.waitFor('mia@acme.test', 2), 'invitation');
      assert.notEqual(first, second);
      await state.filter({ hasText: /^Sent to mia@acme\.test/ }).waitFor();
      const old = await appApi(server, 'POST', '/invitations/lookup', null, { token: first.split('=')[1] });
      assert.equal(old.status, 404);
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });

  test('on a phone the invitations fit the screen', async () => {
    const { page, problems, close } = await openPage(server, PHONE);
    try {
      await signIn(server, page);
      const card = page.locator(byTestId('invites-card'));
      await card.waitFor();
      await page.locator(byTestId('invite-row')).first().waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
      await card.scrollIntoViewIfNeeded();
      await screenshot(page, 'invitations-sent-390', { fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});

describe('with the mail server down', () => {
  let down = null;
  before(async () => {
    // A port that was just listening and now refuses connections.
    const gone = await startSmtpSink();
    await gone.stop();
    down = await startServer({
      HEFFL_SMTP_URL: gone.url,
      HEFFL_SMTP_FROM: 'heffl <noreply@acme.test>',
      HEFFL_PUBLIC_URL: (base) => base,
    });
  });
  after(() => down?.stop());

  test('the invitation is made, says why its email was not sent, and offers Resend', async () => {
    const { page, problems, close } = await openPage(down, DESKTOP);
    try {
      await signIn(down, page);
      await page.locator(byTestId('invite-email')).fill('kai@acme.test');
      await page.locator(byTestId('invite-submit')).click();
      const state = page.locator(byTestId('invite-state')).first();
      await state.filter({ hasText: 'Not sent to kai@acme.test: the mail server could not be reached' }).waitFor();
      assert.equal(await page.locator(byTestId('invite-resend')).count(), 1);
      assert.equal(await page.locator(byTestId('invite-link')).count(), 0, 'the link is not shown even when its email failed');
      await page.locator(byTestId('invites-card')).scrollIntoViewIfNeeded();
      await screenshot(page, 'invitations-failed-1280', { fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await close();
    }
  });
});

describe('without email', () => {
  let plain = null;
  before(async () => {
    plain = await startServer();
  });
  after(() => plain?.stop());

  test('the sign-in page says to ask an operator, and invitations show the link to copy', async () => {
    const { page, problems, close } = await openPage(plain, DESKTOP);
    try {
      await page.goto(`${plain.base}/settings/developer`);
      const operator = page.locator(byTestId('forgot-operator'));
      await operator.waitFor();
      assert.match(await operator.innerText(), /heffl-api users set-password/);
      assert.ok(await page.locator(byTestId('forgot-button')).isHidden());
      await screenshot(page, 'signin-without-email-1280', { fullPage: true });

      await signIn(plain, page);
      await page.locator(byTestId('invite-email')).fill('nia@acme.test');
      await page.locator(byTestId('invite-submit')).click();
      const link = page.locator(byTestId('invite-link'));
      await link.waitFor();
      assert.match(await link.inputValue(), /\/settings\/developer#invitation=[0-9a-f]{64}$/);
      await page.locator(byTestId('invite-state')).filter({ hasText: 'Link handed over' }).waitFor();
      assert.equal(await page.locator(byTestId('invite-resend')).count(), 0);
      await page.locator(byTestId('invites-card')).scrollIntoViewIfNeeded();
      await screenshot(page, 'invitations-link-1280', { fullPage: true });
      assert.deepEqual(problems, []);
      const token = await loginToken(plain, plain.owner);
      const list = await appApi(plain, 'GET', `/workspaces/${plain.workspaceId}/invitations`, token);
      assert.equal(list.body.items[0].emailStatus, null);
    } finally {
      await close();
    }
  });
});
