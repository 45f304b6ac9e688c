// The Settings > Developer page in a real browser (Debian's Chromium, driven by playwright-core)
// against a real `heffl-api serve` on a fresh SQLite file, both set up by harness.mjs. Builds
// nothing: target/debug/heffl-api comes from the `cargo test` run that precedes this one in
// scripts/test.sh.
//
// Screenshots for a person to look at are written to target/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  KEY_PATTERN,
  PHONE,
  activeTestId,
  byTestId,
  rowNamed,
  screenshot,
  startServer,
  appApi as serverApi,
  loginToken as serverLogin,
  openPage as openServerPage,
  signIn as serverSignIn,
} from './harness.mjs';

let server = null;
let owner = null;

const appApi = (method, route, token, body) => serverApi(server, method, route, token, body);
const loginToken = (credentials) => serverLogin(server, credentials);
const signIn = (page, credentials) => serverSignIn(server, page, credentials);

/** A page that may also use the clipboard, which the copy button needs. */
async function openPage(viewport) {
  const opened = await openServerPage(server, viewport);
  await opened.page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  return opened;
}

/** Fills in and sends the sign-in form without waiting for the app (`signIn` does). */
async function submitSignIn(page, credentials) {
  await page.goto(`${server.base}/settings/developer`);
  await page.locator(byTestId('signin-email')).fill(credentials.email);
  await page.locator(byTestId('signin-password')).fill(credentials.password);
  await page.locator(byTestId('signin-submit')).click();
}

/** Every place in the page where a secret could linger, as one string to search. */
async function pageTraces(page) {
  return page.evaluate(() => {
    const storage = (store) =>
      Array.from({ length: store.length }, (_, i) => `${store.key(i)}=${store.getItem(store.key(i))}`);
    const values = Array.from(document.querySelectorAll('input, textarea, select'), (e) => e.value);
    return [
      location.href,
      document.documentElement.outerHTML,
      document.body.innerText,
      values.join('\n'),
      storage(sessionStorage).join('\n'),
      storage(localStorage).join('\n'),
      document.cookie,
      String(window.getSelection()),
    ].join('\n');
  });
}

async function callMe(key) {
  const response = await fetch(`${server.base}/api/v1/me`, {
    headers: { 'x-api-key': key, 'Content-Type': 'application/json' },
  });
  return { status: response.status, body: await response.json() };
}

before(async () => {
  // Every test signs in afresh as the same owner.
  server = await startServer({ HEFFL_LOGIN_ATTEMPTS_PER_MINUTE: '60' });
  owner = server.owner;
});

after(() => server?.stop());

// ------------------------------------------------------------------------------------------------

describe('Settings > Developer', { timeout: 180_000 }, () => {
  test('is served from the binary with a strict Content-Security-Policy', async () => {
    const expected = {
      '/settings/developer': 'text/html; charset=utf-8',
      '/settings/developer/app.js': 'text/javascript; charset=utf-8',
      '/settings/developer/charts.js': 'text/javascript; charset=utf-8',
      '/settings/developer/webhooks.js': 'text/javascript; charset=utf-8',
      '/settings/developer/people.js': 'text/javascript; charset=utf-8',
      '/settings/developer/app.css': 'text/css; charset=utf-8',
    };
    for (const [route, contentType] of Object.entries(expected)) {
      const response = await fetch(server.base + route);
      assert.equal(response.status, 200, route);
      assert.equal(response.headers.get('content-type'), contentType, route);
      assert.equal(response.headers.get('cache-control'), 'no-cache', route);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', route);
      assert.equal(response.headers.get('referrer-policy'), 'no-referrer', route);
      assert.equal(
        response.headers.get('content-security-policy'),
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
          "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        route,
      );
      assert.ok((await response.text()).length > 500, `${route} has a body`);
    }
    const html = await (await fetch(`${server.base}/settings/developer`)).text();
    // Nothing is loaded from another origin (a placeholder showing an address loads nothing).
    assert.doesNotMatch(html, /(src|href|action)=["']?https?:\/\//, 'the page loads nothing from another origin');
  });

  test('create a key, use it, revoke it on the page, and the API refuses it', async () => {
    const { page, problems, requests, close } = await openPage();
    try {
      await signIn(page);
      assert.equal(await page.locator(byTestId('workspace-select')).inputValue(), server.workspaceId);
      assert.equal(
        (await page.locator(`${byTestId('workspace-select')} option:checked`).textContent()).trim(),
        'Acme',
      );
      await page.locator(byTestId('keys-empty')).waitFor();

      // Create: focus goes into the dialog's name field.
      await page.locator(byTestId('create-key-button')).click();
      await page.locator(byTestId('create-dialog')).waitFor();
      assert.equal(await activeTestId(page), 'create-name');
      await page.locator(byTestId('create-name')).fill('Website Forms');
      await page.locator(byTestId('create-submit')).click();

      const reveal = page.locator(byTestId('new-key-dialog'));
      await reveal.waitFor();
      assert.equal(await activeTestId(page), 'copy-key-button');
      const key = (await page.locator(byTestId('new-key-value')).textContent()).trim();
      assert.match(key, KEY_PATTERN);
      assert.match(
        await page.locator(byTestId('new-key-warning')).textContent(),
        /Copy this key now — you won't be able to see it again/,
      );
      assert.equal(await page.locator(byTestId('new-key-name')).textContent(), 'Website Forms');

      // The list behind the dialog already has the key, by its hint only.
      const row = rowNamed(page, 'Website Forms');
      await row.waitFor();
      assert.equal(await row.locator(byTestId('key-status')).textContent(), 'Active');
      assert.equal((await row.locator(byTestId('key-last-used')).textContent()).trim(), 'Never');
      const hint = await row.locator(byTestId('key-hint')).textContent();
      assert.ok(hint.endsWith(key.slice(-4)), `hint ${hint} ends with the key's last 4 characters`);
      assert.ok(!(await row.textContent()).includes(key), 'the list never shows the whole key');

      await screenshot(page, 'developer-page-new-key');
      await page.setViewportSize(PHONE);
      await screenshot(page, 'developer-page-mobile-new-key');
      await page.setViewportSize(DESKTOP);

      // Copy puts exactly the key on the clipboard.
      await page.locator(byTestId('copy-key-button')).click();
      await page.locator(byTestId('copy-feedback')).filter({ hasText: 'Copied' }).waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);

      // While shown, the key is only in the dialog: not in the URL, nor in any storage.
      const shown = await page.evaluate(() => ({
        url: location.href,
        session: JSON.stringify({ ...sessionStorage }),
        local: JSON.stringify({ ...localStorage }),
      }));
      for (const [where, text] of Object.entries(shown)) {
        assert.ok(!text.includes(key), `the key is not in ${where}`);
      }

      // The key works.
      const me = await callMe(key);
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.equal(me.body.apiKey.name, 'Website Forms');
      assert.equal(me.body.workspace.id, server.workspaceId);
      assert.equal(me.body.user.email, 'owner@acme.test');

      // Done hides it for good and gives focus back to Create.
      await page.locator(byTestId('new-key-done')).click();
      await reveal.waitFor({ state: 'hidden' });
      assert.equal(await activeTestId(page), 'create-key-button');
      assert.ok(!(await pageTraces(page)).includes(key), 'the key is gone from the page after Done');

      await page.setViewportSize(PHONE);
      assert.ok(await page.locator(byTestId('account-email')).isVisible(), 'who is signed in shows on a phone');
      await screenshot(page, 'developer-page-mobile', { fullPage: true });
      await page.setViewportSize(DESKTOP);

      // Revoke, confirmed in the page's own dialog.
      await row.locator(byTestId('revoke-button')).click();
      const confirm = page.locator(byTestId('revoke-dialog'));
      await confirm.waitFor();
      assert.equal(await activeTestId(page), 'revoke-cancel', 'Cancel, not Revoke, has focus');
      assert.equal(await page.locator(byTestId('revoke-name')).textContent(), 'Website Forms');
      await screenshot(page, 'developer-page-revoke-dialog');
      await page.locator(byTestId('revoke-confirm')).click();
      await confirm.waitFor({ state: 'hidden' });

      // Gone from the active keys, listed as revoked.
      await row.waitFor({ state: 'detached' });
      await page.locator(byTestId('status-message')).filter({ hasText: 'Revoked the key Website Forms' }).waitFor();
      await page.locator('label[for="filter-revoked"]').click();
      const revokedRow = rowNamed(page, 'Website Forms');
      await revokedRow.waitFor();
      assert.equal(await revokedRow.locator(byTestId('key-status')).textContent(), 'Revoked');
      assert.equal(await revokedRow.locator(byTestId('revoke-button')).count(), 0);
      await page.locator('label[for="filter-all"]').click();
      await page.locator(`${byTestId('key-row')}[data-status="revoked"]`).waitFor();
      await screenshot(page, 'developer-page-revoked');
      // What the list said ("Revoked the key …") is not carried into a key's own view.
      await rowNamed(page, 'Website Forms').locator(byTestId('key-name')).click();
      await page.locator(byTestId('key-detail')).waitFor();
      assert.equal(await page.locator(byTestId('status-message')).textContent(), '');

      // The API now refuses the key, and says why.
      const refused = await callMe(key);
      assert.equal(refused.status, 401, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, 'UNAUTHORIZED');
      assert.equal(refused.body.error.details.reason, 'revoked_api_key');

      assert.ok(!(await pageTraces(page)).includes(key), 'the key never came back into the page');
      const token = await page.evaluate(() => sessionStorage.getItem('heffl.developer.sessionToken'));
      assert.ok(token, 'the session token is in sessionStorage');
      for (const url of requests) {
        const { origin, pathname } = new URL(url);
        assert.equal(origin, server.base, `only this origin is called: ${url}`);
        assert.match(pathname, /^\/(settings\/developer|app\/v1\/)/, `only the page and /app/v1: ${url}`);
        assert.ok(!url.includes(key) && !url.includes(token), `no secret in a URL: ${url}`);
      }
      // A server without GET /app/v1/scopes answers 404 and the page falls back to the built-in
      // scopes; Chromium logs that as "Failed to load resource". Anything else is a fault.
      assert.deepEqual(
        problems.filter((p) => !p.includes('Failed to load resource')),
        [],
        'no script errors and no CSP refusals',
      );
    } finally {
      await close();
    }
  });

  test('shows API and validation errors in words', async () => {
    const { page, problems, close } = await openPage();
    try {
      await submitSignIn(page, { email: 'owner@acme.test', password: 'not the password' });
      const signInError = page.locator(byTestId('signin-error'));
      await signInError.filter({ hasText: 'The email or password is incorrect.' }).waitFor();
      await screenshot(page, 'developer-page-signin-error');
      assert.equal(await page.locator(byTestId('app-view')).isVisible(), false);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'no token after a failed sign-in');

      await page.locator(byTestId('signin-password')).fill(owner.password);
      await page.locator(byTestId('signin-submit')).click();
      await page.locator(byTestId('app-view')).waitFor();

      // Blank and too long are caught before any request is sent.
      await page.locator(byTestId('create-key-button')).click();
      const createError = page.locator(byTestId('create-error'));
      let posts = 0;
      page.on('request', (r) => {
        if (r.method() === 'POST' && r.url().endsWith('/api-keys')) posts += 1;
      });
      await page.locator(byTestId('create-name')).fill('   ');
      await page.locator(byTestId('create-submit')).click();
      await createError.filter({ hasText: 'Enter a name for the key.' }).waitFor();
      assert.equal(await page.locator(byTestId('create-name')).getAttribute('aria-invalid'), 'true');
      // Typing a name that is fine takes the message away at once, not at the next submit.
      await page.locator(byTestId('create-name')).fill('Website Forms');
      assert.equal(await createError.isVisible(), false, 'the stale message goes');
      assert.equal(await page.locator(byTestId('create-name')).getAttribute('aria-invalid'), null);
      await page.locator(byTestId('create-name')).fill('x'.repeat(101));
      await page.locator(byTestId('create-name')).press('Enter');
      await createError.filter({ hasText: 'at most 100' }).waitFor();
      assert.equal(posts, 0, 'invalid names are not sent');

      // The server's own validation message, with its field issues, is shown too.
      await page.locator(byTestId('create-name')).fill('Zapier\u0007bell');
      await page.locator(byTestId('create-submit')).click();
      await createError
        .filter({ hasText: 'Name must not contain invisible, control or line-break characters (found U+0007)' })
        .waitFor();
      await screenshot(page, 'developer-page-create-error');
      assert.equal(posts, 1);
      assert.equal(await page.locator(byTestId('create-dialog')).isVisible(), true, 'the dialog stays open');
      assert.equal(await page.locator(byTestId('new-key-dialog')).isVisible(), false);
      const token = await page.evaluate(() => sessionStorage.getItem('heffl.developer.sessionToken'));
      const keys = await fetch(
        `${server.base}/app/v1/workspaces/${server.workspaceId}/api-keys?status=all`,
        { headers: { Authorization: `Bearer ${token}` } },
      );
      assert.equal(keys.status, 200);
      const names = (await keys.json()).items.map((k) => k.name);
      assert.ok(!names.some((n) => n.startsWith('Zapier') || n.startsWith('xxx')), `nothing created: ${names}`);
      // Chromium logs each 4xx answer as "Failed to load resource"; anything else is a fault.
      assert.deepEqual(
        problems.filter((p) => !p.includes('Failed to load resource')),
        [],
        'no script errors and no CSP refusals',
      );
    } finally {
      await close();
    }
  });

  test('works from the keyboard: dialogs take focus, Escape closes them, focus returns', async () => {
    const { page, close } = await openPage();
    try {
      await page.goto(`${server.base}/settings/developer`);
      assert.equal(await activeTestId(page), 'signin-email', 'the sign-in form has focus');
      await page.keyboard.type(owner.email);
      await page.keyboard.press('Tab');
      await page.keyboard.type(owner.password);
      await page.keyboard.press('Enter');
      await page.locator(byTestId('app-view')).waitFor();

      await page.locator(byTestId('create-key-button')).focus();
      await page.keyboard.press('Enter');
      await page.locator(byTestId('create-dialog')).waitFor();
      assert.equal(await activeTestId(page), 'create-name');
      await page.keyboard.press('Escape');
      await page.locator(byTestId('create-dialog')).waitFor({ state: 'hidden' });
      assert.equal(await activeTestId(page), 'create-key-button');

      await page.keyboard.press('Enter');
      await page.locator(byTestId('create-dialog')).waitFor();
      await page.keyboard.type('Data Sync');
      await page.keyboard.press('Enter');
      await page.locator(byTestId('new-key-dialog')).waitFor();
      const key = (await page.locator(byTestId('new-key-value')).textContent()).trim();
      assert.match(key, KEY_PATTERN);
      // Escape is the same as Done: the key is gone.
      await page.keyboard.press('Escape');
      await page.locator(byTestId('new-key-dialog')).waitFor({ state: 'hidden' });
      assert.equal(await activeTestId(page), 'create-key-button');
      assert.ok(!(await pageTraces(page)).includes(key));

      const row = rowNamed(page, 'Data Sync');
      await row.locator(byTestId('revoke-button')).focus();
      await page.keyboard.press('Enter');
      await page.locator(byTestId('revoke-dialog')).waitFor();
      assert.equal(await activeTestId(page), 'revoke-cancel');
      await page.keyboard.press('Escape');
      await page.locator(byTestId('revoke-dialog')).waitFor({ state: 'hidden' });
      assert.equal(await activeTestId(page), 'revoke-button', 'focus is back on the row');
      assert.equal(await row.locator(byTestId('key-status')).textContent(), 'Active', 'Escape revoked nothing');
      assert.equal((await callMe(key)).status, 200);

      // Keyboard-only revoke: Tab from Cancel to Revoke, Enter.
      await page.keyboard.press('Enter');
      await page.locator(byTestId('revoke-dialog')).waitFor();
      await page.keyboard.press('Tab');
      assert.equal(await activeTestId(page), 'revoke-confirm');
      await page.keyboard.press('Enter');
      await row.waitFor({ state: 'detached' });
      const refused = await callMe(key);
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error.details.reason, 'revoked_api_key');
    } finally {
      await close();
    }
  });

  test('an ended session returns to the sign-in form with a message; sign out forgets the token', async () => {
    const { page, close } = await openPage();
    try {
      await signIn(page);
      // Every request the signed-in page makes at first has been answered: the 401 below must
      // come from the click, not from a card still loading.
      await page.waitForLoadState('networkidle');
      const token = await page.evaluate(() => sessionStorage.getItem('heffl.developer.sessionToken'));
      assert.ok(token);

      // The session ends elsewhere (another tab signed out); the next API call gets 401.
      const logout = await fetch(`${server.base}/app/v1/auth/logout`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(logout.status, 204);
      await page.locator('label[for="filter-all"]').click();
      await page.locator(byTestId('signin-view')).waitFor();
      assert.match(await page.locator(byTestId('signin-notice')).textContent(), /session has ended/);
      assert.equal(await page.evaluate(() => sessionStorage.getItem('heffl.developer.sessionToken')), null);

      // A reload keeps a live session (sessionStorage), and Sign out ends it on the server too.
      await signIn(page);
      await page.reload();
      await page.locator(byTestId('app-view')).waitFor();
      const second = await page.evaluate(() => sessionStorage.getItem('heffl.developer.sessionToken'));
      await page.locator(byTestId('signout-button')).click();
      await page.locator(byTestId('signin-view')).waitFor();
      assert.match(await page.locator(byTestId('signin-notice')).textContent(), /signed out/);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0);
      const after = await fetch(`${server.base}/app/v1/session`, {
        headers: { Authorization: `Bearer ${second}` },
      });
      assert.equal(after.status, 401, 'the token no longer works on the server');
    } finally {
      await close();
    }
  });

  test('a member sees only their own keys; a second workspace can be picked', async () => {
    const ownerToken = await loginToken(owner);
    const member = { email: 'mia@acme.test', password: 'a long passphrase for mia' };
    // People join only by invitation (docs/api.md §10).
    const invited = await appApi('POST', `/workspaces/${server.workspaceId}/invitations`, ownerToken, {
      email: member.email,
      role: 'member',
    });
    assert.equal(invited.status, 201, JSON.stringify(invited.body));
    const added = await appApi('POST', '/invitations/accept', null, {
      token: invited.body.token,
      name: 'Mia Member',
      password: member.password,
    });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const ownersKey = await appApi('POST', `/workspaces/${server.workspaceId}/api-keys`, ownerToken, {
      name: 'Owner Only',
    });
    assert.equal(ownersKey.status, 201);
    const staging = await appApi('POST', '/workspaces', ownerToken, { name: 'Acme Staging' });
    assert.equal(staging.status, 201);
    const stagingKey = await appApi('POST', `/workspaces/${staging.body.id}/api-keys`, ownerToken, {
      name: 'Staging Sync',
    });
    assert.equal(stagingKey.status, 201);

    const { page, close } = await openPage();
    try {
      await signIn(page, member);
      assert.match(await page.locator(byTestId('workspace-role')).textContent(), /Member/);
      assert.equal(await page.locator(byTestId('scope-note')).isVisible(), true);
      await page.locator(byTestId('keys-empty')).waitFor();
      assert.equal(await rowNamed(page, 'Owner Only').count(), 0, "the owner's key is not listed");
      assert.equal(await page.locator(byTestId('revoke-button')).count(), 0);
    } finally {
      await close();
    }

    const owners = await openPage();
    try {
      await signIn(owners.page);
      await rowNamed(owners.page, 'Owner Only').waitFor();
      assert.equal(await owners.page.locator(byTestId('scope-note')).isVisible(), false);
      const select = owners.page.locator(byTestId('workspace-select'));
      assert.equal(await select.locator('option').count(), 2);
      await select.selectOption({ label: 'Acme Staging' });
      await rowNamed(owners.page, 'Staging Sync').waitFor();
      assert.equal(await rowNamed(owners.page, 'Owner Only').count(), 0);
      // The choice is remembered for this tab.
      await owners.page.reload();
      await rowNamed(owners.page, 'Staging Sync').waitFor();
      assert.equal(await select.inputValue(), staging.body.id);
    } finally {
      await owners.close();
    }
  });
});
