// Shared by browser tests that run their own server: `heffl-api serve` on a fresh SQLite file,
// a fresh Chromium profile per page, and API calls as a test makes them. Not a test file itself
// (node --test runs only *.test.mjs). Builds nothing: target/debug/heffl-api must exist.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
  : path.join(REPO, 'target');
const BINARY = path.join(TARGET, 'debug', 'heffl-api');
export const SCREENSHOTS = path.join(TARGET, 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const KEY_PATTERN = /^hk_live_[0-9A-Za-z]{36}$/;
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

export const byTestId = (id) => `[data-testid="${id}"]`;

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

/** The parent's environment without any setting that would point the server elsewhere. */
function serverEnv(databaseUrl, bind, extra) {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('HEFFL_') && name !== 'DATABASE_URL') env[name] = value;
  }
  return {
    ...env,
    DATABASE_URL: databaseUrl,
    HEFFL_BIND: bind,
    HEFFL_LOG_FORMAT: 'json',
    HEFFL_LOGIN_ATTEMPTS_PER_MINUTE: '120',
    ...extra,
  };
}

/**
 * Starts a server with `extraEnv` (a value may be a function of the server's base URL, for
 * HEFFL_PUBLIC_URL); resolves to {base, workspaceId, owner, stop()}.
 */
export async function startServer(extraEnv = {}) {
  assert.ok(existsSync(BINARY), `${BINARY} is missing: build it first (cargo build)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  await mkdir(SCREENSHOTS, { recursive: true });
  const dir = await mkdtemp(path.join(tmpdir(), 'heffl-browser-'));
  const databaseUrl = `sqlite://${path.join(dir, 'heffl.db')}`;
  const port = await freePort();
  const resolved = Object.fromEntries(
    Object.entries(extraEnv).map(([name, value]) => [
      name,
      typeof value === 'function' ? value(`http://127.0.0.1:${port}`) : value,
    ]),
  );
  const env = serverEnv(databaseUrl, `127.0.0.1:${port}`, resolved);
  const { stdout } = await promisify(execFile)(
    BINARY,
    ['bootstrap', '--workspace', 'Acme', '--email', 'owner@acme.test', '--name', 'Olive Owner'],
    { env, cwd: dir },
  );
  const created = JSON.parse(stdout.trim().split('\n').filter(Boolean).pop());
  const server = {
    base: `http://127.0.0.1:${port}`,
    workspaceId: created.workspaceId,
    owner: { email: 'owner@acme.test', password: created.password },
    output: '',
  };
  const child = spawn(BINARY, ['serve'], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (chunk) => (server.output += chunk));
  child.stderr.on('data', (chunk) => (server.output += chunk));
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  /** A one-shot command of the binary on this server's database; its last JSON line. */
  server.cli = async (args, input) => {
    const { stdout } = await new Promise((resolve, reject) => {
      const child = execFile(BINARY, args, { env, cwd: dir }, (error, out, err) => {
        if (error) reject(new Error(`${args.join(' ')}: ${err}`));
        else resolve({ stdout: out });
      });
      child.stdin.end(input ?? '');
    });
    return JSON.parse(stdout.trim().split('\n').filter(Boolean).pop());
  };
  server.stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const code = await Promise.race([exited, new Promise((r) => setTimeout(r, 100, undefined))]);
    if (code !== undefined) throw new Error(`heffl-api serve exited with ${code}:\n${server.output}`);
    try {
      if ((await fetch(`${server.base}/readyz`)).status === 200) return server;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`heffl-api serve not ready in 30 s:\n${server.output}`);
  }
}

/** A fresh Chromium profile per page, with what the page did (errors, requests) to assert on. */
export async function openPage(server, viewport = DESKTOP) {
  const profile = await mkdtemp(path.join(tmpdir(), 'heffl-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    locale: 'en-GB',
    timezoneId: 'UTC',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15_000);
  const problems = [];
  const requests = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // Chromium logs each 4xx answer as "Failed to load resource"; anything else is a fault.
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

export async function signIn(server, page, credentials = server.owner) {
  await page.goto(`${server.base}/settings/developer`);
  await page.locator(byTestId('signin-email')).fill(credentials.email);
  await page.locator(byTestId('signin-password')).fill(credentials.password);
  await page.locator(byTestId('signin-submit')).click();
  await page.locator(byTestId('app-view')).waitFor();
}

export async function activeTestId(page) {
  return page.evaluate(() => document.activeElement && document.activeElement.dataset.testid);
}

export function rowNamed(page, name) {
  return page.locator(byTestId('key-row'), {
    has: page.locator(byTestId('key-name'), { hasText: new RegExp(`^${name}$`) }),
  });
}

export async function appApi(server, method, route, token, body) {
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

export async function loginToken(server, credentials) {
  const response = await fetch(`${server.base}/app/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(credentials),
  });
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

/** A request to /api/v1 as a server-side integration makes it; resolves to the status. */
export async function callApi(server, key, method = 'GET', route = '/api/v1/me', body) {
  const response = await fetch(`${server.base}${route}`, {
    method,
    headers: { 'x-api-key': key, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  await response.arrayBuffer();
  return response.status;
}

export async function screenshot(page, name, options = {}) {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), ...options });
}

/** Every visible control that lies outside the viewport or outside an ancestor that clips it. */
export function controlsCutOff(page) {
  return page.evaluate(() => {
    const cut = [];
    for (const control of document.querySelectorAll('button, a, select, input, summary')) {
      const box = control.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) continue;
      const label = control.textContent.trim() || control.id || control.tagName;
      if (box.left < -0.5 || box.right > document.documentElement.clientWidth + 0.5) {
        cut.push(`${label}: outside the viewport`);
      }
      for (let node = control.parentElement; node; node = node.parentElement) {
        if (!/(hidden|clip|auto|scroll)/.test(getComputedStyle(node).overflowX)) continue;
        const edge = node.getBoundingClientRect();
        if (box.left < edge.left - 0.5 || box.right > edge.right + 0.5) {
          cut.push(`${label}: cut by .${node.className || node.tagName}`);
        }
      }
    }
    return cut;
  });
}
