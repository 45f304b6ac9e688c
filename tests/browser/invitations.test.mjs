// Invitations and the password in the Settings > Developer page (SPEC §10), in Debian's
// Chromium against a real `heffl-api serve` on a fresh SQLite file. Needs target/debug/heffl-api.
// Screenshots (1280 and 390 px wide) go to target/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
  : path.join(REPO, 'target');
const BINARY = path.join(TARGET, 'debug', 'heffl-api');
const SCREENSHOTS = path.join(TARGET, 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const byTestId = (id) => `[data-testid="${id}"]`;

const server = { process: null, base: null, output: '', dir: null, env: null };
let owner = null;

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Runs a one-shot command of the binary; its stdout as the last JSON line. */
function cli(args, input) {
  return new Promise((resolve, reject) => {
    const child = execFile(BINARY, args, { env: server.env, cwd: server.dir }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${args.join(' ')}: ${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').filter(Boolean).pop()));
    });
    child.stdin.end(input ?? '');
  });
}

async function startServer() {
  assert.ok(existsSync(BINARY), `${BINARY} is missing: build it first (cargo build)`);
  server.dir = await mkdtemp(path.join(tmpdir(), 'heffl-browser-inv-'));
  const port = await freePort();
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('HEFFL_') && name !== 'DATABASE_URL') env[name] = value;
  }
  server.env = {
    ...env,
    DATABASE_URL: `sqlite://${path.join(server.dir, 'heffl.db')}`,
    HEFFL_BIND: `127.0.0.1:${port}`,
    HEFFL_LOG_FORMAT: 'json',
    HEFFL_LOGIN_ATTEMPTS_PER_MINUTE: '60',
  };
  const created = await cli(['bootstrap', '--workspace', 'Acme', '--email', 'owner@acme.test', '--name', 'Olive Owner']);
  owner = { email: 'owner@acme.test', password: created.password, workspaceId: created.workspaceId };

  server.base = `http://127.0.0.1:${port}`;
  server.process = spawn(BINARY, ['serve'], { env: server.env, cwd: server.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  server.process.stdout.on('data', (chunk) => (server.output += chunk));
  server.process.stderr.on('data', (chunk) => (server.output += chunk));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${server.base}/readyz`)).status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`heffl-api serve not ready in 30 s:\n${server.output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopServer() {
  const child = server.process;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  if (server.dir) await rm(server.dir, { recursive: true, force: true });
}

async function openPage(viewport = DESKTOP) {
  const profile = await mkdtemp(path.join(tmpdir(), 'heffl-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    locale: 'en-GB',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15_000);
  const problems = [];
  const requests = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // Chromium logs each expected 4xx answer as "Failed to load resource"; anything else is a fault.
    if (message.type() === 'error' && !message.text().includes('Failed to load resource')) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('request', (request) => requests.push(request.url()));
  const close = async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  };
  return { page, problems, requests, close };
}

async function appApi(method, route, token, body) {
  const response = await fetch(`${server.base}/app/v1${route}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'Content-Type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function loginToken(email, password) {
  const { status, body } = await appApi('POST', '/auth/login', null, { email, password });
  assert.equal(status, 200, JSON.stringify(body));
  return body.token;
}

async function invite(email, role) {
  const token = await loginToken(owner.email, owner.password);
  const { status, body } = await appApi('POST', `/workspaces/${owner.workspaceId}/invitations`, token, { email, role });
  assert.equal(status, 201, JSON.stringify(body));
  return body.token;
}

const link = (token) => `${server.base}/settings/developer#invitation=${token}`;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  await mkdir(SCREENSHOTS, { recursive: true });
  await startServer();
});

after(stopServer);

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
