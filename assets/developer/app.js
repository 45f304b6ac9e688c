// Settings > Developer: sign in, pick a workspace, see usage, list, create, roll and revoke API
// keys, and look at one key in detail. Charts are drawn by charts.js (window.HefflCharts).
//
// Rules this file keeps (the browser test checks the first three):
// - A new key's secret exists only in the "new key" dialog's text while it is open: it is never
//   stored in a variable that outlives the request, in storage, or in the URL.
// - The session token lives in sessionStorage only and travels in the Authorization header.
// - Everything from the API is written with textContent, never parsed as HTML.
// - Only /app/v1 on this origin is called (the Content-Security-Policy allows nothing else).
'use strict';

(() => {
  const TOKEN_STORAGE = 'heffl.developer.sessionToken';
  const WORKSPACE_STORAGE = 'heffl.developer.workspaceId';
  const MAX_NAME_CHARS = 100;

  const FIELD_LABELS = {
    name: 'Name',
    email: 'Email',
    password: 'Password',
    scopes: 'Scopes',
    expiresAt: 'Expiry date',
    expiresInDays: 'Expiry',
    rateLimitPerMinute: 'Rate limit',
    expiresOldIn: 'Grace period',
    description: 'Description',
    allowedIps: 'Allowed IPs',
    externalId: 'External ID',
    meta: 'Metadata',
    credits: 'Credits',
  };
  const DAY_MS = 86_400_000;
  const UNUSED_DAYS = 30;
  // Until GET /app/v1/scopes answers (older servers), the built-in scopes.
  const FALLBACK_SCOPES = [
    { name: 'me:read', description: 'Read the key\'s own workspace, user and key (GET /api/v1/me).', builtIn: true },
    { name: 'leads:read', description: 'List and read leads.', builtIn: true },
    { name: 'leads:write', description: 'Create, update and delete leads.', builtIn: true },
  ];
  const REVOKE_REASONS = {
    revoked: 'revoked in Settings > Developer',
    reported_leaked: 'reported leaked',
    owner_removed: 'its creator was removed from the workspace',
    user_disabled: "its creator's account was disabled",
    operator: 'revoked by an operator',
  };
  const EVENT_LABELS = {
    'api_key.created': 'Created',
    'api_key.revoked': 'Revoked',
    'api_key.rolled': 'Rolled',
    'api_key.expired': 'Expired',
    'api_key.reported_leaked': 'Reported leaked',
    'api_key.updated': 'Edited',
  };
  // The refusals usage counts, in words (the code beside them is the error's details.reason).
  const REFUSAL_WORDS = {
    rate_limited: 'over the rate limit',
    credits_exhausted: 'out of credits',
    ip_not_allowed: 'from an address not allowed',
    insufficient_scope: 'outside the key\'s scopes',
    insufficient_permission: 'not allowed to its user\'s role',
    outside_data_boundary: 'outside its user\'s data',
    workspace_mismatch: 'for another workspace',
    revoked_api_key: 'with the key revoked',
    expired_api_key: 'with the key expired',
    disabled_api_key: 'with the key paused',
    browser_use_blocked: 'sent from a browser',
  };
  const Charts = window.HefflCharts;
  const ROLE_LABELS = { owner: 'Owner', admin: 'Admin', member: 'Member', viewer: 'Viewer' };
  const EMPTY_TEXT = {
    active: 'No active keys. Create one to connect your website forms, data sync or Zapier.',
    revoked: 'No revoked keys.',
    expired: 'No expired keys.',
    all: 'No keys yet. Create one to connect your website forms, data sync or Zapier.',
  };

  const el = (id) => document.getElementById(id);
  // Every time on the page is UTC, as the usage card says once.
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' });
  const longDateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long', timeZone: 'UTC' });
  const exactFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' });
  const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

  const state = {
    user: null,
    workspaces: [],
    workspaceId: null,
    filter: 'active',
    // Increases with every list request, so a slow answer for an old filter or workspace
    // cannot overwrite the answer for the current one.
    listGeneration: 0,
    revokeTarget: null,
    rollTarget: null,
    // The key the edit dialog is open for.
    editing: null,
    // The keys last listed, by id, for the detail view and the dialogs.
    keys: new Map(),
    // Scopes keys may have, from GET /scopes (loaded once per session).
    scopes: null,
    scopesFromServer: false,
    // The key shown in the detail view, if any.
    detailId: null,
    // Like listGeneration, for the usage chart and the detail view.
    usageGeneration: 0,
    detailGeneration: 0,
    // Workspace members by user id (owners and admins only), to name the actors of events.
    members: null,
  };

  // ---------------------------------------------------------------------------------------------
  // The API

  const { ApiError } = window.HefflApi;

  const api = (method, path, body) => window.HefflApi.request(method, path, body);

  const workspacePath = (suffix) => `/workspaces/${encodeURIComponent(state.workspaceId)}${suffix}`;

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  function announce(message) {
    const status = el('status');
    // Cleared first so the same message twice in a row is announced twice.
    status.textContent = '';
    window.setTimeout(() => {
      status.textContent = message;
    }, 50);
  }

  function sentence(text) {
    const trimmed = String(text).trim();
    if (!trimmed) return trimmed;
    const first = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(first) ? first : `${first}.`;
  }

  /** Writes an API error into `box` in words. A validation error's `message` is written for
   *  developers ("name: …", "see details.issues"), so its field issues are shown instead. */
  function showError(box, error) {
    box.replaceChildren();
    const issues = error.details && Array.isArray(error.details.issues) ? error.details.issues : [];
    const lines = issues.map((issue) => {
      const label = FIELD_LABELS[issue.field] || issue.field || '';
      return sentence(label ? `${label} ${issue.message}` : issue.message);
    });
    const lead = document.createElement('p');
    if (lines.length === 0) {
      lead.textContent = error.message;
      box.append(lead);
    } else if (lines.length === 1) {
      lead.textContent = lines[0];
      box.append(lead);
    } else {
      lead.textContent = 'Please correct the following:';
      const list = document.createElement('ul');
      for (const line of lines) {
        const item = document.createElement('li');
        item.textContent = line;
        list.append(item);
      }
      box.append(lead, list);
    }
    box.hidden = false;
  }

  function showText(box, text) {
    box.replaceChildren();
    const message = document.createElement('p');
    message.textContent = text;
    box.append(message);
    box.hidden = false;
  }

  function clearBox(box) {
    box.replaceChildren();
    box.hidden = true;
  }

  function setBusy(button, busy, busyLabel) {
    if (busy) {
      button.dataset.label = button.textContent;
      button.textContent = busyLabel;
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      delete button.dataset.label;
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  /** "3 days ago", "in 2 hours", "just now". */
  function relativeTime(date, now = Date.now()) {
    const seconds = Math.round((date.getTime() - now) / 1000);
    const abs = Math.abs(seconds);
    if (abs < 45) return 'just now';
    const units = [
      ['minute', 60],
      ['hour', 3600],
      ['day', 86_400],
      ['month', 30 * 86_400],
      ['year', 365 * 86_400],
    ];
    let unit = units[0];
    for (const candidate of units) if (abs >= candidate[1] * 0.95) unit = candidate;
    // Under a month, days stay days ("45 days ago" reads better than "1 month ago" for a key).
    if (unit[0] === 'month' && abs < 60 * 86_400) unit = units[2];
    return relativeFormat.format(Math.round(seconds / unit[1]), unit[0]);
  }

  /** A relative time, with the exact one on hover and for assistive technology. */
  function timeElement(iso) {
    const time = document.createElement('time');
    const date = new Date(iso);
    time.dateTime = iso;
    time.className = 'nowrap';
    time.textContent = relativeTime(date);
    time.title = `${longDateFormat.format(date)} (${dateFormat.format(date)})`;
    time.setAttribute('aria-label', `${time.textContent}, ${dateFormat.format(date)}`);
    return time;
  }

  function daysSince(iso) {
    return (Date.now() - new Date(iso).getTime()) / DAY_MS;
  }

  /** Active, and not used for 30 days (or never, and created more than 30 days ago). */
  function isUnused(key) {
    if (key.status !== 'active') return false;
    return daysSince(key.lastUsedAt || key.createdAt) >= UNUSED_DAYS;
  }

  function canManageKeys() {
    const workspace = currentWorkspace();
    return Boolean(workspace && (workspace.role === 'owner' || workspace.role === 'admin'));
  }

  /** Only the key's creator may roll it (docs/api.md §9), and only an active key not rolled before. */
  function canRoll(key) {
    return (
      key.status === 'active' &&
      !key.replacedBy &&
      Boolean(state.user && key.createdBy && key.createdBy.id === state.user.id)
    );
  }

  function personName(user) {
    if (!user) return null;
    return user.name || user.email || null;
  }

  function badge(text, tone, testid) {
    const span = document.createElement('span');
    span.className = `badge badge-${tone}`;
    if (testid) span.dataset.testid = testid;
    span.textContent = text;
    return span;
  }

  function statusBadge(key) {
    if (key.status === 'active' && key.enabled === false) return badge('Paused', 'paused', 'key-status');
    const labels = { active: 'Active', revoked: 'Revoked', expired: 'Expired' };
    const tone = key.status === 'active' ? 'active' : key.revokeReason === 'reported_leaked' ? 'leaked' : 'revoked';
    return badge(labels[key.status] || key.status, tone, 'key-status');
  }

  /** "Revoked 3 days ago by Olive Owner — reported leaked", as nodes. */
  function revokedLine(key) {
    const line = document.createElement('span');
    line.className = 'small block revoked-line';
    line.dataset.testid = 'key-revoked-info';
    if (key.status === 'expired' && key.expiresAt) {
      line.append('Expired ', timeElement(key.expiresAt));
      return line;
    }
    if (!key.revokedAt) return null;
    line.append('Revoked ', timeElement(key.revokedAt));
    const by = personName(key.revokedBy);
    if (by) line.append(` by ${by}`);
    const reason = key.revokeReason ? REVOKE_REASONS[key.revokeReason] || key.revokeReason : null;
    if (reason && key.revokeReason !== 'revoked') {
      const why = document.createElement('span');
      why.className = key.revokeReason === 'reported_leaked' ? 'reason reason-leaked' : 'reason';
      why.dataset.testid = 'key-revoke-reason';
      why.textContent = reason;
      line.append(' — ', why);
    }
    return line;
  }

  /** "still in use — N attempts since it was revoked", when a dead key is still being sent. */
  function stillInUse(key, rejected) {
    if (key.status === 'active' || !(rejected > 0)) return null;
    const since = key.status === 'expired' ? 'it expired' : 'it was revoked';
    const line = document.createElement('span');
    line.className = 'small block still-in-use';
    line.dataset.testid = 'key-still-in-use';
    line.textContent = `Still in use — ${Charts.plural(rejected, 'attempt', 'attempts')} since ${since}`;
    return line;
  }

  /** A table cell and the box its content goes in (one box, so the phone layout's two-column
   *  grid gets exactly a label and a value). */
  function cell(label, className) {
    const td = document.createElement('td');
    td.dataset.label = label;
    if (className) td.className = className;
    const value = document.createElement('div');
    value.className = 'cell-value';
    td.append(value);
    return [td, value];
  }

  // ---------------------------------------------------------------------------------------------
  // Views

  function showView(name) {
    document.body.dataset.view = name;
    el('loading').hidden = name !== 'loading';
    el('signin-view').hidden = name !== 'signin';
    el('app-view').hidden = name !== 'app';
    document.querySelector('[data-testid="account"]').hidden = name !== 'app';
  }

  function closeAllDialogs() {
    for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  }

  /** Back to the sign-in form, forgetting everything about the previous session. */
  function showSignIn(notice, tone) {
    closeAllDialogs();
    sessionStorage.removeItem(TOKEN_STORAGE);
    document.dispatchEvent(new CustomEvent('heffl:workspace', { detail: { id: null, role: null } }));
    state.user = null;
    state.workspaces = [];
    state.workspaceId = null;
    state.listGeneration += 1;
    state.usageGeneration += 1;
    state.detailGeneration += 1;
    state.keys = new Map();
    state.scopes = null;
    state.members = null;
    state.detailId = null;
    el('key-rows').replaceChildren();
    el('usage-chart').replaceChildren();
    showKeyList();
    el('workspace-select').replaceChildren();
    el('account-email').textContent = '';
    const box = el('signin-notice');
    if (notice) {
      box.textContent = notice;
      box.className = `notice${tone ? ` notice-${tone}` : ''}`;
      box.hidden = false;
    } else {
      box.hidden = true;
    }
    el('signin-password').value = '';
    clearBox(el('signin-error'));
    document.dispatchEvent(new CustomEvent('heffl:workspace', { detail: null }));
    showView('signin');
    const email = el('signin-email');
    (email.value ? el('signin-password') : email).focus();
  }

  function sessionEnded() {
    showSignIn('Your session has ended. Sign in again to continue.', 'warning');
    announce('Your session has ended. Sign in again.');
  }

  // ---------------------------------------------------------------------------------------------
  // Sign in and out

  async function onSignIn(event) {
    event.preventDefault();
    const errorBox = el('signin-error');
    const emailInput = el('signin-email');
    const passwordInput = el('signin-password');
    const email = emailInput.value.trim();
    const password = passwordInput.value;
    emailInput.removeAttribute('aria-invalid');
    passwordInput.removeAttribute('aria-invalid');
    const problems = [];
    if (!email) {
      problems.push('Enter your email address.');
      emailInput.setAttribute('aria-invalid', 'true');
    }
    if (!password) {
      problems.push('Enter your password.');
      passwordInput.setAttribute('aria-invalid', 'true');
    }
    if (problems.length > 0) {
      showText(errorBox, problems.join(' '));
      (email ? passwordInput : emailInput).focus();
      return;
    }
    clearBox(errorBox);
    el('signin-notice').hidden = true;
    const button = el('signin-submit');
    setBusy(button, true, 'Signing in…');
    try {
      const login = await api('POST', '/auth/login', { email, password });
      sessionStorage.setItem(TOKEN_STORAGE, login.token);
      passwordInput.value = '';
      await loadSession();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(errorBox, error);
      passwordInput.value = '';
      passwordInput.focus();
    } finally {
      setBusy(button, false);
    }
  }

  async function onSignOut() {
    const button = el('signout-button');
    setBusy(button, true, 'Signing out…');
    try {
      await api('POST', '/auth/logout');
    } catch {
      // The token is forgotten below either way; an expired session is already signed out.
    } finally {
      setBusy(button, false);
    }
    sessionStorage.removeItem(WORKSPACE_STORAGE);
    showSignIn('You have signed out.', 'success');
    announce('You have signed out.');
  }

  // ---------------------------------------------------------------------------------------------
  // Session and workspaces

  async function loadSession() {
    let session;
    try {
      session = await api('GET', '/session');
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) {
        sessionEnded();
      } else {
        showSignIn(`Could not load your account: ${error.message}`, 'error');
      }
      return;
    }
    state.user = session.user;
    state.workspaces = Array.isArray(session.workspaces) ? session.workspaces : [];
    state.defaultRateLimit = session.defaults ? session.defaults.rateLimitPerMinute : null;
    // Whatever the status line said to the previous person ("You have signed out.") is stale.
    el('status').textContent = '';
    el('account-email').textContent = session.user.name
      ? `${session.user.name} (${session.user.email})`
      : session.user.email;
    renderWorkspaces();
    showView('app');
    el('page-heading').focus();
    if (state.workspaceId) await Promise.all([loadKeys(), loadUsage()]);
  }

  function renderWorkspaces() {
    const select = el('workspace-select');
    select.replaceChildren();
    for (const workspace of state.workspaces) {
      const option = document.createElement('option');
      option.value = workspace.id;
      option.textContent = workspace.name;
      select.append(option);
    }
    const remembered = sessionStorage.getItem(WORKSPACE_STORAGE);
    const chosen =
      state.workspaces.find((w) => w.id === remembered) || state.workspaces[0] || null;
    state.workspaceId = chosen ? chosen.id : null;
    if (chosen) select.value = chosen.id;
    select.disabled = state.workspaces.length < 2;
    el('no-workspaces').hidden = state.workspaces.length > 0;
    el('keys-card').hidden = state.workspaces.length === 0;
    el('usage-card').hidden = state.workspaces.length === 0;
    el('workspace-select').closest('.workspace-picker').hidden = state.workspaces.length === 0;
    renderRole();
  }

  function currentWorkspace() {
    return state.workspaces.find((w) => w.id === state.workspaceId) || null;
  }

  function renderRole() {
    const workspace = currentWorkspace();
    const role = workspace ? workspace.role : null;
    // webhooks.js and people.js (and account.js, for invitations) show their cards to owners and
    // admins of the chosen workspace.
    document.dispatchEvent(
      new CustomEvent('heffl:workspace', {
        detail: { ...(workspace || {}), id: state.workspaceId, role, userId: state.user ? state.user.id : null },
      }),
    );
    el('workspace-role').textContent = role ? `Your role: ${ROLE_LABELS[role] || role}` : '';
    const seesOwnOnly = role === 'member' || role === 'viewer';
    el('scope-note').hidden = !seesOwnOnly;
    el('scope-role').textContent = seesOwnOnly ? (ROLE_LABELS[role] || role).toLowerCase() : '';
    el('usage-scope').textContent = seesOwnOnly
      ? 'Your keys, by outcome. All times on this page are UTC.'
      : 'All keys of the workspace, by outcome. All times on this page are UTC.';
  }

  async function onWorkspaceChange() {
    state.workspaceId = el('workspace-select').value;
    sessionStorage.setItem(WORKSPACE_STORAGE, state.workspaceId);
    renderRole();
    state.members = null;
    showKeyList();
    const workspace = currentWorkspace();
    await Promise.all([loadKeys(), loadUsage()]);
    if (workspace) announce(`Showing the keys of ${workspace.name}.`);
  }

  // ---------------------------------------------------------------------------------------------
  // The list

  async function loadKeys() {
    if (!state.workspaceId) return;
    const generation = ++state.listGeneration;
    const table = el('key-table');
    const errorBox = el('app-error');
    table.setAttribute('aria-busy', 'true');
    let list;
    try {
      list = await api('GET', workspacePath(`/api-keys?status=${encodeURIComponent(state.filter)}`));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (generation !== state.listGeneration) return;
      table.setAttribute('aria-busy', 'false');
      if (error.status === 401) {
        sessionEnded();
      } else {
        showListError(`Could not load the keys: ${error.message}`);
      }
      return;
    }
    if (generation !== state.listGeneration) return;
    table.setAttribute('aria-busy', 'false');
    clearBox(errorBox);
    renderKeys(Array.isArray(list.items) ? list.items : []);
  }

  /** A failed list in place of the list: the rows of another filter or workspace are not left
   *  under the tab just chosen, and Retry is where the reader is looking. */
  function showListError(text) {
    state.keys = new Map();
    el('key-rows').replaceChildren();
    el('key-table').hidden = true;
    const empty = el('keys-empty');
    empty.replaceChildren();
    const message = document.createElement('span');
    message.className = 'list-error';
    message.dataset.testid = 'keys-error';
    message.setAttribute('role', 'alert');
    message.textContent = text;
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'button button-small';
    retry.dataset.testid = 'keys-retry';
    retry.textContent = 'Retry';
    retry.addEventListener('click', async () => {
      await loadKeys();
      if (!el('key-table').hidden) el('keys-heading').focus();
    });
    empty.append(message, ' ', retry);
    empty.hidden = false;
  }

  function renderKeys(keys) {
    state.keys = new Map(keys.map((key) => [key.id, key]));
    const rows = el('key-rows');
    rows.replaceChildren();
    for (const key of rollOrder(keys)) rows.append(keyRow(key));
    const empty = el('keys-empty');
    empty.replaceChildren();
    if (keys.length === 0 && state.filter === 'all') empty.append(firstKeyGuide());
    else empty.textContent = keys.length === 0 ? EMPTY_TEXT[state.filter] : '';
    empty.hidden = keys.length > 0;
    if (keys.length === 0 && state.filter === 'active') checkWorkspaceEmpty(empty);
    el('key-table').hidden = keys.length === 0;
    loadSparklines(keys, state.listGeneration);
  }

  /** A rolled key's old secret right after its replacement, so a roll reads as one key with two
   *  secrets for a while rather than two keys of the same name. */
  function rollOrder(keys) {
    const byId = new Map(keys.map((key) => [key.id, key]));
    const placed = new Set();
    const ordered = [];
    const place = (key) => {
      if (placed.has(key.id)) return;
      placed.add(key.id);
      ordered.push(key);
      const old = key.rolledFrom ? byId.get(key.rolledFrom) : null;
      if (old && old.replacedBy === key.id) place(old);
    };
    for (const key of keys) {
      // An old secret waits for its replacement, when that is listed too.
      if (key.replacedBy && byId.has(key.replacedBy)) continue;
      place(key);
    }
    for (const key of keys) place(key);
    return ordered;
  }

  function keyRow(key) {
    const row = document.createElement('tr');
    row.dataset.testid = 'key-row';
    row.dataset.keyId = key.id;
    row.dataset.status = key.status;
    if (key.status !== 'active') row.classList.add('is-revoked');
    const replacement = key.replacedBy && state.keys.get(key.replacedBy);
    if (replacement) {
      row.classList.add('is-old-secret');
      row.dataset.oldSecretOf = replacement.id;
    }

    const [nameCell, name] = cell('Name', 'cell-name');
    // The name opens the key's detail view: a button, so it works from the keyboard.
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'link-button key-name';
    open.dataset.testid = 'key-name';
    open.textContent = key.name;
    open.setAttribute('aria-label', `${key.name}: details and usage`);
    open.addEventListener('click', () => openKeyDetail(key.id, open));
    if (replacement) {
      const tag = document.createElement('span');
      tag.className = 'small block old-secret-tag';
      tag.dataset.testid = 'key-old-secret';
      tag.textContent = "↳ the old secret of the key above, until its grace period ends";
      name.append(open, tag);
    } else {
      name.append(open, policyLine(key));
    }

    const [hintCell, hint] = cell('Key', 'cell-hint');
    const hintCode = document.createElement('code');
    hintCode.dataset.testid = 'key-hint';
    hintCode.textContent = key.hint;
    hint.append(hintCode, keyIdLine(key));

    const [createdCell, created] = cell('Created', 'cell-created');
    created.append(timeElement(key.createdAt));
    const creator = personName(key.createdBy);
    if (creator) {
      const by = document.createElement('span');
      by.className = 'muted small block creator';
      by.dataset.testid = 'key-creator';
      by.textContent = `by ${creator}`;
      if (key.createdBy.email && key.createdBy.name) by.title = key.createdBy.email;
      created.append(by);
    }

    const [lastUsedCell, lastUsed] = cell('Last used', 'cell-last-used');
    lastUsedCell.dataset.testid = 'key-last-used';
    if (key.lastUsedAt) {
      lastUsed.append(timeElement(key.lastUsedAt));
    } else {
      const never = document.createElement('span');
      never.className = 'muted';
      never.textContent = 'Never';
      lastUsed.append(never);
    }

    const [usageCell, usage] = cell('Last 30 days', 'cell-usage');
    usageCell.dataset.testid = 'key-usage';
    const spark = document.createElement('span');
    spark.className = 'spark-slot';
    spark.dataset.testid = 'key-sparkline';
    const requests = document.createElement('span');
    requests.className = 'muted small block';
    requests.dataset.testid = 'key-request-count';
    requests.textContent = `${Charts.plural(Number(key.requestCount) || 0, 'request', 'requests')} in all`;
    usage.append(spark, requests);

    const [statusCell, status] = cell('Status', 'cell-status');
    status.append(statusBadge(key));
    const expiry = expiryFlag(key);
    if (expiry) status.append(expiry);
    if (isUnused(key)) status.append(unusedMarker(key));
    const revoked = revokedLine(key);
    if (revoked) status.append(revoked);
    if (key.status === 'active' && key.replacedBy && key.expiresAt) {
      status.append(...rolledLines(key, replacement));
    }

    const [actionsCell, actions] = cell('Actions', 'cell-actions');
    if (canRoll(key)) {
      const roll = document.createElement('button');
      roll.type = 'button';
      roll.className = 'button button-small';
      roll.dataset.testid = 'roll-button';
      roll.textContent = 'Roll';
      roll.setAttribute('aria-label', `Roll ${key.name}`);
      roll.addEventListener('click', () => openRoll(key, roll));
      actions.append(roll);
    }
    if (key.status === 'active') {
      const revoke = document.createElement('button');
      revoke.type = 'button';
      revoke.className = 'button button-danger-quiet button-small';
      revoke.dataset.testid = 'revoke-button';
      revoke.textContent = 'Revoke';
      revoke.setAttribute('aria-label', `Revoke ${key.name}`);
      revoke.addEventListener('click', () => openRevoke(key, revoke));
      actions.append(revoke);
    }

    row.append(nameCell, hintCell, createdCell, lastUsedCell, usageCell, statusCell, actionsCell);
    return row;
  }

  /** A workspace without a single key: what a key is for, the button, and the first request. */
  function firstKeyGuide() {
    const box = document.createElement('div');
    box.className = 'first-key';
    box.dataset.testid = 'first-key';
    const heading = document.createElement('h3');
    heading.textContent = 'Create your first key';
    const text = document.createElement('p');
    text.textContent = 'A key lets your website forms, data sync or Zapier call the API as you. Create one, then try it from a terminal:';
    const snippet = document.createElement('pre');
    snippet.className = 'snippet';
    const code = document.createElement('code');
    code.dataset.testid = 'first-request';
    code.textContent = `curl ${window.location.origin}/api/v1/me \\\n  -H "x-api-key: $HEFFL_API_KEY"`;
    snippet.append(code);
    const create = document.createElement('button');
    create.type = 'button';
    create.className = 'button button-primary';
    create.dataset.testid = 'first-key-button';
    create.textContent = 'Create your first key';
    create.addEventListener('click', openCreate);
    box.append(heading, text, snippet, create);
    return box;
  }

  /** No active key: when the workspace has none of any status, the guide replaces the sentence. */
  async function checkWorkspaceEmpty(empty) {
    const generation = state.listGeneration;
    let all;
    try {
      all = await api('GET', workspacePath('/api-keys?status=all'));
    } catch {
      return;
    }
    if (generation !== state.listGeneration || state.filter !== 'active') return;
    if (Array.isArray(all.items) && all.items.length === 0) empty.replaceChildren(firstKeyGuide());
  }

  /** An old secret's end, exactly, and a warning while something still sends it. */
  function rolledLines(key, replacement) {
    const rolled = document.createElement('span');
    rolled.className = 'small block revoked-line';
    rolled.dataset.testid = 'key-rolled-info';
    const end = new Date(key.expiresAt);
    rolled.append(`Rolled; this secret stops ${exactFormat.format(end)} UTC (`, timeElement(key.expiresAt), ')');
    const lines = [rolled];
    const rolledAt = replacement ? replacement.createdAt : null;
    if (key.lastUsedAt && rolledAt && new Date(key.lastUsedAt) >= new Date(rolledAt)) {
      const warning = document.createElement('span');
      warning.className = 'small block still-in-use';
      warning.dataset.testid = 'key-old-secret-in-use';
      warning.append('Still in use: last request ', timeElement(key.lastUsedAt), '. Switch to the new secret before it stops.');
      lines.push(warning);
    }
    return lines;
  }

  /** What the key may do and spend, in a line under its name: scopes, limit, credits. */
  function policyLine(key) {
    const line = document.createElement('span');
    line.className = 'muted small block key-policy';
    line.dataset.testid = 'key-policy';
    const scopes = Array.isArray(key.scopes) ? key.scopes : [];
    const parts = [scopes.length <= 2 ? scopes.join(', ') : `${scopes.length} scopes`];
    const own = key.rateLimitPerMinute !== null && key.rateLimitPerMinute !== undefined;
    const limit = own ? key.rateLimitPerMinute : state.defaultRateLimit;
    if (limit !== null && limit !== undefined) {
      parts.push(`${limit === 0 ? 'no limit' : `${Charts.count(limit)}/min`}${own ? '' : ' (default)'}`);
    }
    if (key.credits) parts.push(`${Charts.count(key.credits.remaining)} credits left`);
    line.textContent = parts.filter(Boolean).join(' · ');
    line.title = scopes.join(', ');
    return line;
  }

  /** The key's id (what operators and the API name it by), copyable. */
  function keyIdLine(key) {
    const line = document.createElement('span');
    line.className = 'small block key-id-line';
    const id = document.createElement('code');
    id.className = 'key-id muted';
    id.dataset.testid = 'key-id';
    // Shortened like the hint, to keep the column narrow; the whole id is copied and in the title.
    id.textContent = key.id.length > 16 ? `${key.id.slice(0, 8)}…${key.id.slice(-4)}` : key.id;
    id.title = key.id;
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'link-button small';
    copy.dataset.testid = 'copy-key-id';
    copy.textContent = 'Copy ID';
    copy.setAttribute('aria-label', `Copy the id of ${key.name}`);
    copy.addEventListener('click', async () => {
      let copied = false;
      if (navigator.clipboard && window.isSecureContext) {
        copied = await navigator.clipboard.writeText(key.id).then(() => true, () => false);
      }
      if (!copied) {
        const range = document.createRange();
        id.textContent = key.id;
        range.selectNodeContents(id);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
      }
      announce(copied ? `Copied the id of ${key.name}.` : 'The id is selected: press Ctrl+C to copy it.');
    });
    line.append(id, ' ', copy);
    return line;
  }

  /** "Expires in 3 days" (a warning within a week) or the date, for an active key that expires;
   *  "Expired …" once the time has passed by this page's clock (the list's status is the
   *  server's when it was loaded). */
  function expiryFlag(key) {
    if (key.status !== 'active' || !key.expiresAt || key.replacedBy) return null;
    const left = new Date(key.expiresAt).getTime() - Date.now();
    const flag = document.createElement('span');
    flag.className = 'small block expiry-flag';
    flag.dataset.testid = 'key-expiry';
    if (left <= 0) {
      flag.append('Expired ', timeElement(key.expiresAt));
      return flag;
    }
    if (left < 7 * DAY_MS) {
      flag.append(badge('Expires soon', 'unused'), ' ');
      flag.classList.add('is-soon');
    }
    flag.append('Expires ', timeElement(key.expiresAt));
    return flag;
  }

  /** The "unused" marker, with the shortest path to revoking the key. */
  function unusedMarker(key) {
    const box = document.createElement('span');
    box.className = 'unused block';
    box.dataset.testid = 'key-unused';
    const text = badge(`Unused for ${UNUSED_DAYS}+ days`, 'unused');
    box.append(text);
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'link-button link-danger small';
    revoke.dataset.testid = 'unused-revoke';
    revoke.textContent = 'Revoke it?';
    revoke.setAttribute('aria-label', `${key.name} is unused: revoke it`);
    revoke.addEventListener('click', () => openRevoke(key, revoke));
    box.append(' ', revoke);
    return box;
  }

  async function onFilterChange(event) {
    state.filter = event.target.value;
    await loadKeys();
  }

  // ---------------------------------------------------------------------------------------------
  // Usage: the workspace chart and each row's sparkline

  async function loadUsage() {
    if (!state.workspaceId) return;
    const generation = ++state.usageGeneration;
    const slot = el('usage-chart');
    slot.setAttribute('aria-busy', 'true');
    let usage;
    try {
      usage = await api('GET', workspacePath('/usage?days=30&granularity=day'));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (generation !== state.usageGeneration) return;
      slot.setAttribute('aria-busy', 'false');
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      showChartError(slot, `Could not load the usage: ${error.message}`);
      return;
    }
    if (generation !== state.usageGeneration) return;
    slot.setAttribute('aria-busy', 'false');
    if (Charts.totals(usage.buckets || []).total === 0) {
      // Thirty empty days drawn full size say less than one sentence.
      const none = document.createElement('p');
      none.className = 'muted usage-none';
      none.dataset.testid = 'usage-none';
      none.textContent = 'No requests in the last 30 days yet. Once your keys are used, each day shows here by outcome.';
      slot.replaceChildren(none);
      return;
    }
    slot.replaceChildren(
      Charts.stackedChart(usage.buckets || [], {
        granularity: 'day',
        title: 'Requests per day, last 30 days',
        testid: 'workspace-chart',
      }),
      refusalList(usage.refusals || [], 'workspace-refusals'),
      busiestKeys(usage.keys || []),
    );
  }

  /** Refused requests by the rule that refused them, in words, most first; nothing when none. */
  function refusalList(refusals, testid) {
    const box = document.createElement('div');
    box.className = 'refusals';
    box.dataset.testid = testid;
    if (refusals.length === 0) return box;
    const heading = document.createElement('h3');
    heading.className = 'busiest-heading';
    heading.textContent = 'Refused, by reason';
    const list = document.createElement('ul');
    list.className = 'refusal-list';
    for (const { reason, requests } of refusals) {
      const item = document.createElement('li');
      item.dataset.testid = 'refusal';
      const words = document.createElement('span');
      words.textContent = REFUSAL_WORDS[reason] || reason;
      const code = document.createElement('code');
      code.className = 'muted small';
      code.textContent = reason;
      const count = document.createElement('strong');
      count.textContent = Charts.count(requests);
      item.append(count, ' ', words, ' ', code);
      list.append(item);
    }
    box.append(heading, list);
    return box;
  }

  /** The workspace's requests by key (what the usage answer already holds): the busiest five,
   *  each opening its key. */
  function busiestKeys(keys) {
    const list = document.createElement('ol');
    list.className = 'busiest';
    list.dataset.testid = 'busiest-keys';
    const top = [...keys].filter((key) => key.total > 0).sort((a, b) => b.total - a.total || a.name.localeCompare(b.name)).slice(0, 5);
    if (top.length === 0) return list;
    const most = top[0].total;
    for (const key of top) {
      const item = document.createElement('li');
      item.dataset.testid = 'busiest-key';
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'link-button';
      open.textContent = key.name;
      open.addEventListener('click', () => openKeyDetail(key.id, open));
      const bar = document.createElement('span');
      bar.className = 'busiest-bar';
      bar.style.setProperty('--share', String(key.total / most));
      const total = document.createElement('span');
      total.className = 'muted small';
      total.textContent = Charts.plural(key.total, 'request', 'requests') + (key.status === 'active' ? '' : ` · ${key.status}`);
      item.append(open, bar, total);
      list.append(item);
    }
    const heading = document.createElement('h3');
    heading.className = 'busiest-heading';
    heading.textContent = 'Busiest keys, last 30 days';
    const box = document.createElement('div');
    box.append(heading, list);
    return box;
  }

  function showChartError(slot, text) {
    const message = document.createElement('p');
    message.className = 'notice notice-error';
    message.textContent = text;
    slot.replaceChildren(message);
  }

  /** One key's usage; null when it cannot be read (the row then simply has no chart). */
  async function keyUsage(keyId, query) {
    try {
      return await api('GET', workspacePath(`/api-keys/${encodeURIComponent(keyId)}/usage?${query}`));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) sessionEnded();
      return null;
    }
  }

  /** Sparklines for the listed keys, a few requests at a time. 90 days are read so that a dead
   *  key's attempts since it stopped working are counted beyond the 30 days drawn. */
  async function loadSparklines(keys, generation) {
    const queue = [...keys];
    const worker = async () => {
      while (queue.length > 0 && generation === state.listGeneration) {
        const key = queue.shift();
        const usage = await keyUsage(key.id, 'days=90&granularity=day');
        if (!usage || generation !== state.listGeneration) continue;
        renderSparkline(key, usage.buckets || []);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }

  function renderSparkline(key, buckets) {
    const row = document.querySelector(`tr[data-key-id="${CSS.escape(key.id)}"]`);
    if (!row) return;
    const slot = row.querySelector('[data-testid="key-sparkline"]');
    const { svg, sum } = Charts.sparkline(buckets.slice(-30), key.name);
    slot.replaceChildren(svg);
    slot.dataset.total = String(sum);
    const rejected = Charts.totals(buckets).rejected;
    const warning = stillInUse(key, rejected);
    if (warning) row.querySelector('.cell-status .cell-value').append(warning);
  }

  // ---------------------------------------------------------------------------------------------
  // Dialogs: focus moves in when one opens and back to the control that opened it when it closes
  // (Escape included: a native <dialog> closes on Escape and fires "close").

  const returnFocus = new WeakMap();

  function openDialog(dialog, opener, focusTarget) {
    returnFocus.set(dialog, opener);
    dialog.showModal();
    focusTarget.focus();
  }

  function restoreFocus(dialog) {
    const opener = returnFocus.get(dialog);
    returnFocus.delete(dialog);
    // "close" fires a task later; by then another dialog may have opened and own the focus.
    if (document.querySelector('dialog[open]')) return;
    if (opener && opener.isConnected && !opener.closest('[hidden]') && !opener.disabled) {
      opener.focus();
    } else if (!el('key-detail').hidden) {
      el('detail-name').focus();
    } else if (!el('app-view').hidden) {
      el('keys-heading').focus();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Create

  async function loadScopes() {
    if (state.scopes) return;
    try {
      const answer = await api('GET', '/scopes');
      const items = answer && Array.isArray(answer.items) ? answer.items : [];
      state.scopes = items.length > 0 ? items : FALLBACK_SCOPES;
      state.scopesFromServer = items.length > 0;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      state.scopes = FALLBACK_SCOPES;
      state.scopesFromServer = false;
    }
  }

  /** One checkbox per scope, all checked: a key can do everything unless narrowed here. */
  function renderScopeChoices() {
    const list = el('create-scope-list');
    list.replaceChildren();
    for (const scope of state.scopes || FALLBACK_SCOPES) {
      const label = document.createElement('label');
      label.className = 'check';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.name = 'scopes';
      box.value = scope.name;
      box.checked = true;
      box.dataset.testid = `scope-${scope.name}`;
      const text = document.createElement('span');
      const code = document.createElement('code');
      code.textContent = scope.name;
      text.append(code);
      if (scope.description) {
        const description = document.createElement('span');
        description.className = 'muted small block';
        description.textContent = scope.description;
        text.append(description);
      }
      label.append(box, text);
      list.append(label);
    }
  }

  function onExpiryChange() {
    const onDate = el('create-expiry').value === 'date';
    el('create-expiry-date-field').hidden = !onDate;
    if (onDate) el('create-expiry-date').focus();
  }

  async function openCreate() {
    const input = el('create-name');
    input.value = '';
    input.removeAttribute('aria-invalid');
    clearBox(el('create-error'));
    await loadScopes();
    renderScopeChoices();
    el('create-expiry').value = 'never';
    const date = el('create-expiry-date');
    date.value = '';
    date.min = new Date(Date.now() + DAY_MS).toISOString().slice(0, 10);
    el('create-expiry-date-field').hidden = true;
    el('create-rate').value = '';
    el('create-rate-field').hidden = !canManageKeys();
    openDialog(el('create-dialog'), el('create-key-button'), input);
  }

  /** The create request's optional fields, or the problems found in them. */
  function createOptions() {
    const body = {};
    const problems = [];
    const boxes = [...document.querySelectorAll('#create-scope-list input[name="scopes"]')];
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    if (chosen.length === 0) {
      problems.push({ text: 'Choose at least one scope.', focus: boxes[0] });
    } else if (chosen.length < boxes.length || state.scopesFromServer) {
      body.scopes = chosen;
    }
    const expiry = el('create-expiry').value;
    if (expiry === 'date') {
      const value = el('create-expiry-date').value;
      // The end of the chosen day, UTC.
      const end = value ? new Date(`${value}T23:59:59Z`) : null;
      if (!end || Number.isNaN(end.getTime())) {
        problems.push({ text: 'Choose the expiry date.', focus: el('create-expiry-date') });
      } else if (end.getTime() <= Date.now()) {
        problems.push({ text: 'The expiry date must be in the future.', focus: el('create-expiry-date') });
      } else {
        body.expiresAt = end.toISOString();
      }
    } else if (expiry !== 'never') {
      body.expiresInDays = Number(expiry);
    }
    const rate = el('create-rate').value.trim();
    if (!el('create-rate-field').hidden && rate !== '') {
      const limit = Number(rate);
      if (!Number.isInteger(limit) || limit < 0 || limit > 1_000_000) {
        problems.push({ text: 'The rate limit must be a whole number from 0 to 1,000,000.', focus: el('create-rate') });
      } else {
        body.rateLimitPerMinute = limit;
      }
    }
    return { body, problems };
  }

  async function onCreate(event) {
    event.preventDefault();
    const input = el('create-name');
    const errorBox = el('create-error');
    const name = input.value.trim();
    // Counted in code points, as the server counts characters.
    const length = [...name].length;
    let problem = null;
    if (length === 0) problem = 'Enter a name for the key.';
    else if (length > MAX_NAME_CHARS)
      problem = `The name is ${length} characters long; use at most ${MAX_NAME_CHARS}.`;
    if (problem) {
      input.setAttribute('aria-invalid', 'true');
      showText(errorBox, problem);
      input.focus();
      return;
    }
    input.removeAttribute('aria-invalid');
    const options = createOptions();
    if (options.problems.length > 0) {
      showText(errorBox, options.problems.map((p) => p.text).join(' '));
      options.problems[0].focus.focus();
      return;
    }
    clearBox(errorBox);
    const submit = el('create-submit');
    setBusy(submit, true, 'Creating…');
    try {
      const created = await api('POST', workspacePath('/api-keys'), { name, ...options.body });
      returnFocus.delete(el('create-dialog'));
      el('create-dialog').close();
      revealKey(created.name, created.key, el('create-key-button'));
      announce(`Created the key ${created.name}.`);
      // The list is read back from the server, whose records carry no secret.
      loadKeys();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      if (error.details && Array.isArray(error.details.issues)) {
        input.setAttribute('aria-invalid', 'true');
      }
      showError(errorBox, error);
      input.focus();
    } finally {
      setBusy(submit, false);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The new key, shown once

  function revealKey(name, secret, opener) {
    el('new-key-name').textContent = name;
    el('new-key-value').textContent = secret;
    el('copy-feedback').textContent = '';
    el('copy-key-button').textContent = 'Copy';
    openDialog(el('new-key-dialog'), opener, el('copy-key-button'));
  }

  function selectSecret() {
    const range = document.createRange();
    range.selectNodeContents(el('new-key-value'));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  async function onCopy() {
    const button = el('copy-key-button');
    const feedback = el('copy-feedback');
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(el('new-key-value').textContent);
        copied = true;
      } catch {
        copied = false;
      }
    }
    if (!copied) {
      // Without the async clipboard (plain http on a non-local host, or permission refused):
      // select the text, try the legacy copy command, and otherwise leave it selected for Ctrl+C.
      selectSecret();
      try {
        copied = document.execCommand('copy');
      } catch {
        copied = false;
      }
    }
    if (copied) {
      button.textContent = 'Copied';
      feedback.textContent = 'Copied to the clipboard.';
    } else {
      selectSecret();
      feedback.textContent = 'The key is selected: press Ctrl+C (⌘C on a Mac) to copy it.';
    }
  }

  function forgetKey() {
    el('new-key-value').textContent = '';
    el('new-key-name').textContent = '';
    el('copy-feedback').textContent = '';
    el('copy-key-button').textContent = 'Copy';
    window.getSelection().removeAllRanges();
  }

  // ---------------------------------------------------------------------------------------------
  // Revoke

  function openRevoke(key, opener) {
    state.revokeTarget = { id: key.id, name: key.name };
    el('revoke-name').textContent = key.name;
    el('revoke-hint').textContent = key.hint;
    clearBox(el('revoke-error'));
    // Cancel, not Revoke, gets focus: Enter right after opening must not destroy a key.
    openDialog(el('revoke-dialog'), opener, el('revoke-cancel'));
  }

  async function onRevokeConfirm() {
    const target = state.revokeTarget;
    if (!target) return;
    const confirm = el('revoke-confirm');
    const errorBox = el('revoke-error');
    setBusy(confirm, true, 'Revoking…');
    try {
      await api('POST', workspacePath(`/api-keys/${encodeURIComponent(target.id)}/revoke`));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setBusy(confirm, false);
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      showError(errorBox, error);
      return;
    }
    setBusy(confirm, false);
    state.revokeTarget = null;
    // The row's Revoke button is gone after the reload, so focus lands on the list.
    returnFocus.delete(el('revoke-dialog'));
    el('revoke-dialog').close();
    await Promise.all([loadKeys(), state.detailId === target.id ? renderKeyDetail() : null]);
    announce(`Revoked the key ${target.name}. Requests with it are now refused.`);
  }

  // ---------------------------------------------------------------------------------------------
  // Roll: a new secret for the same key, shown once like a new key

  function openRoll(key, opener) {
    state.rollTarget = { id: key.id, name: key.name };
    el('roll-name').textContent = key.name;
    el('roll-hint').textContent = key.hint;
    clearBox(el('roll-error'));
    const preset = document.querySelector('#roll-grace input[value="86400"]');
    preset.checked = true;
    openDialog(el('roll-dialog'), opener, preset);
  }

  async function onRollConfirm(event) {
    event.preventDefault();
    const target = state.rollTarget;
    if (!target) return;
    const chosen = document.querySelector('#roll-grace input[name="grace"]:checked');
    const expiresOldIn = Number(chosen ? chosen.value : 0);
    const confirm = el('roll-confirm');
    setBusy(confirm, true, 'Rolling…');
    let created;
    try {
      created = await api('POST', workspacePath(`/api-keys/${encodeURIComponent(target.id)}/roll`), {
        expiresOldIn,
      });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setBusy(confirm, false);
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      showError(el('roll-error'), error);
      return;
    }
    setBusy(confirm, false);
    state.rollTarget = null;
    const opener = returnFocus.get(el('roll-dialog'));
    returnFocus.delete(el('roll-dialog'));
    el('roll-dialog').close();
    revealKey(created.name, created.key, opener);
    const when = expiresOldIn === 0 ? 'now' : `in ${relativeTime(new Date(Date.now() + expiresOldIn * 1000)).replace(/^in /, '')}`;
    announce(`Rolled the key ${created.name}. The old secret stops working ${when}.`);
    // The detail view follows the key to its new secret.
    if (state.detailId === target.id) state.detailId = created.id;
    await Promise.all([loadKeys(), state.detailId === created.id ? renderKeyDetail() : null]);
  }

  // ---------------------------------------------------------------------------------------------
  // One key in detail: facts, usage by day and by hour, and its audit events

  function showKeyList() {
    state.detailId = null;
    state.detailGeneration += 1;
    el('key-detail').hidden = true;
    const none = state.workspaces.length === 0;
    el('keys-card').hidden = none;
    el('usage-card').hidden = none;
  }

  async function openKeyDetail(keyId, opener) {
    // What was said about the list ("Created the key …") is not about the key now shown.
    el('status').textContent = '';
    returnFocus.set(el('key-detail'), opener);
    state.detailId = keyId;
    el('keys-card').hidden = true;
    el('usage-card').hidden = true;
    el('key-detail').hidden = false;
    const known = state.keys.get(keyId);
    el('detail-name').textContent = known ? known.name : '';
    el('detail-name').focus();
    window.scrollTo(0, 0);
    await renderKeyDetail();
  }

  function closeKeyDetail() {
    const keyId = state.detailId;
    const opener = returnFocus.get(el('key-detail'));
    returnFocus.delete(el('key-detail'));
    showKeyList();
    const row = keyId ? document.querySelector(`tr[data-key-id="${CSS.escape(keyId)}"] [data-testid="key-name"]`) : null;
    const target = opener && opener.isConnected ? opener : row;
    (target || el('keys-heading')).focus();
  }

  function fact(list, term, ...content) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.append(...content);
    list.append(dt, dd);
    return dd;
  }

  /** The key's creator and the workspace's owners and admins may edit it (docs/api.md §14). */
  function canEdit(key) {
    if (key.status === 'revoked') return false;
    return canManageKeys() || Boolean(state.user && key.createdBy && key.createdBy.id === state.user.id);
  }

  function creditsText(credits) {
    if (!credits) return 'Unlimited';
    let text = `${Charts.count(credits.remaining)} left`;
    const refill = credits.refill;
    if (refill) {
      const when = refill.interval === 'monthly' ? `monthly on day ${refill.day}` : 'daily';
      text += ` · refilled to ${Charts.count(refill.amount)} ${when} (00:00 UTC)`;
    }
    return text;
  }

  function openEdit(key, opener) {
    state.editing = key;
    el('edit-name').value = key.name;
    el('edit-description').value = key.description || '';
    el('edit-allowed-ips').value = (key.allowedIps || []).join('\n');
    el('edit-external-id').value = key.externalId || '';
    el('edit-meta').value = key.meta ? JSON.stringify(key.meta, null, 2) : '';

    // Scopes: the key's own, each ticked; unticking narrows.
    const list = el('edit-scope-list');
    list.replaceChildren();
    for (const name of key.scopes || []) {
      const label = document.createElement('label');
      label.className = 'check';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = name;
      box.checked = true;
      box.dataset.testid = `edit-scope-${name}`;
      const code = document.createElement('code');
      code.textContent = name;
      label.append(box, ' ', code);
      list.append(label);
    }

    // Expiry: the UTC day it ends on; only a changed day is sent.
    const manager = canManageKeys();
    const expiry = el('edit-expiry');
    expiry.value = key.expiresAt ? utcDay(new Date(key.expiresAt)) : '';
    expiry.dataset.initial = expiry.value;
    expiry.min = utcDay(new Date(Date.now() + DAY_MS));
    el('edit-expiry-hint').textContent = manager
      ? 'Empty: never. The key stops at the end of the chosen day (UTC).'
      : 'You may make it end sooner; only owners and admins move it later or remove it.';

    const rate = el('edit-rate');
    rate.value = key.rateLimitPerMinute === null || key.rateLimitPerMinute === undefined ? '' : String(key.rateLimitPerMinute);
    rate.dataset.initial = rate.value;
    const defaultText =
      state.defaultRateLimit === null || state.defaultRateLimit === undefined
        ? "the server's default"
        : state.defaultRateLimit === 0
          ? "the server's default (no limit)"
          : `the server's default (${Charts.count(state.defaultRateLimit)}/min)`;
    el('edit-rate-hint').textContent = manager
      ? `Empty: ${defaultText}; 0: no limit.`
      : `Empty: ${defaultText}. You may set a limit no higher than the default; only owners and admins raise or remove it.`;

    // Credits: owners and admins only; others see what is set.
    const credits = key.credits;
    const budget = Boolean(credits);
    el('edit-dialog').querySelector(`input[name="edit-credits-mode"][value="${budget ? 'budget' : 'unlimited'}"]`).checked = true;
    el('edit-credits-remaining').value = budget ? String(credits.remaining) : '';
    el('edit-credits-refill').value = budget && credits.refill ? credits.refill.interval : 'none';
    el('edit-credits-amount').value = budget && credits.refill ? String(credits.refill.amount) : '';
    el('edit-credits-day').value = budget && credits.refill && credits.refill.day ? String(credits.refill.day) : '1';
    el('edit-credits').dataset.initial = JSON.stringify(creditsForm());
    for (const input of el('edit-credits').querySelectorAll('input, select')) input.disabled = !manager;
    syncCreditFields();

    clearBox(el('edit-error'));
    openDialog(el('edit-dialog'), opener, el('edit-name'));
  }

  /** A date as its UTC yyyy-mm-dd. */
  function utcDay(date) {
    return date.toISOString().slice(0, 10);
  }

  /** The credit fields as the body's `credits` value would say them. */
  function creditsForm() {
    const mode = el('edit-dialog').querySelector('input[name="edit-credits-mode"]:checked');
    if (!mode || mode.value === 'unlimited') return null;
    const interval = el('edit-credits-refill').value;
    const refill =
      interval === 'none'
        ? null
        : {
            amount: Number(el('edit-credits-amount').value),
            interval,
            ...(interval === 'monthly' ? { day: Number(el('edit-credits-day').value) } : {}),
          };
    return { remaining: Number(el('edit-credits-remaining').value), refill };
  }

  function syncCreditFields() {
    const mode = el('edit-dialog').querySelector('input[name="edit-credits-mode"]:checked');
    const budget = Boolean(mode && mode.value === 'budget');
    const interval = el('edit-credits-refill').value;
    el('edit-credit-fields').hidden = !budget;
    const show = (id, visible) => {
      el(id).closest('.credit-field').hidden = !visible;
    };
    show('edit-credits-amount', interval !== 'none');
    show('edit-credits-day', interval === 'monthly');
  }

  /** The form as a PATCH body: the fields always shown, and the policies only when changed. */
  function editBody() {
    const text = (id) => el(id).value.trim();
    const metaText = text('edit-meta');
    let meta = null;
    if (metaText) {
      try {
        meta = JSON.parse(metaText);
      } catch {
        return { problem: 'Metadata must be JSON, such as {"plan": "pro"}.', focus: el('edit-meta') };
      }
      if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
        return { problem: 'Metadata must be a JSON object, such as {"plan": "pro"}.', focus: el('edit-meta') };
      }
    }
    const body = {
      name: text('edit-name'),
      description: text('edit-description') || null,
      allowedIps: text('edit-allowed-ips').split(/[\s,]+/).filter(Boolean),
      externalId: text('edit-external-id') || null,
      meta,
    };
    const key = state.editing;
    const scopes = [...el('edit-scope-list').querySelectorAll('input:checked')].map((box) => box.value);
    if (scopes.length === 0) return { problem: 'A key needs at least one scope; revoke it instead.', focus: el('edit-scope-list').querySelector('input') };
    if (scopes.length !== (key.scopes || []).length) body.scopes = scopes;
    const expiry = el('edit-expiry');
    if (expiry.value !== expiry.dataset.initial) {
      if (!expiry.value) {
        body.expiresAt = null;
      } else {
        body.expiresAt = new Date(`${expiry.value}T23:59:59Z`).toISOString();
      }
    }
    const rate = el('edit-rate');
    if (rate.value.trim() !== rate.dataset.initial) {
      body.rateLimitPerMinute = rate.value.trim() === '' ? null : Number(rate.value);
    }
    const credits = creditsForm();
    if (JSON.stringify(credits) !== el('edit-credits').dataset.initial) {
      if (credits && !(Number.isInteger(credits.remaining) && credits.remaining >= 0)) {
        return { problem: 'Credits left must be a whole number, 0 or more.', focus: el('edit-credits-remaining') };
      }
      body.credits = credits;
    }
    return { body };
  }

  async function onEditSave(event) {
    event.preventDefault();
    const key = state.editing;
    if (!key) return;
    const errorBox = el('edit-error');
    const { body, problem, focus } = editBody();
    if (problem) {
      showText(errorBox, problem);
      focus.focus();
      return;
    }
    clearBox(errorBox);
    const submit = el('edit-submit');
    setBusy(submit, true, 'Saving…');
    try {
      const saved = await api('PATCH', workspacePath(`/api-keys/${encodeURIComponent(key.id)}`), body);
      el('edit-dialog').close();
      announce(`Saved the changes to ${saved.name}.`);
      await renderKeyDetail();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      showError(errorBox, error);
      el('edit-name').focus();
    } finally {
      setBusy(submit, false);
    }
  }

  /** Pause or resume: one PATCH of `enabled`, then the view as the server now says it is. */
  async function onTogglePause(key, button) {
    const pausing = key.enabled !== false;
    setBusy(button, true, pausing ? 'Pausing…' : 'Resuming…');
    try {
      await api('PATCH', workspacePath(`/api-keys/${encodeURIComponent(key.id)}`), { enabled: !pausing });
      announce(pausing ? `${key.name} is paused: its requests are refused until you resume it.` : `${key.name} works again.`);
      await renderKeyDetail();
      el('detail-pause')?.focus();
    } catch (error) {
      setBusy(button, false);
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      showError(el('detail-notices'), error);
    }
  }

  function rateLimitText(key) {
    const own = key.rateLimitPerMinute !== null && key.rateLimitPerMinute !== undefined;
    const limit = own ? key.rateLimitPerMinute : state.defaultRateLimit;
    const suffix = own ? '' : " (the server's default)";
    if (limit === null || limit === undefined) return "The server's default";
    if (limit === 0) return `No limit${suffix}`;
    return `${Charts.count(limit)} requests per minute${suffix}`;
  }

  async function renderKeyDetail() {
    const keyId = state.detailId;
    if (!keyId) return;
    const generation = ++state.detailGeneration;
    let key;
    try {
      key = await api('GET', workspacePath(`/api-keys/${encodeURIComponent(keyId)}`));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (generation !== state.detailGeneration) return;
      if (error.status === 401) {
        sessionEnded();
        return;
      }
      showDetailError(`Could not load the key: ${error.message}`);
      return;
    }
    if (generation !== state.detailGeneration) return;
    el('key-detail').classList.remove('has-failed');
    renderDetailHead(key);
    const [days, hours, long] = await Promise.all([
      keyUsage(key.id, 'days=30&granularity=day'),
      keyUsage(key.id, 'days=1&granularity=hour'),
      keyUsage(key.id, 'days=90&granularity=day'),
      renderKeyEvents(key, generation),
    ]);
    if (generation !== state.detailGeneration) return;
    const daySlot = el('detail-chart-days');
    const hourSlot = el('detail-chart-hours');
    if (days) {
      daySlot.replaceChildren(
        Charts.stackedChart(days.buckets || [], { granularity: 'day', title: `${key.name}: requests per day, last 30 days`, testid: 'detail-day-chart' }),
        refusalList(days.refusals || [], 'detail-refusals'),
      );
    } else {
      showChartError(daySlot, 'Could not load the usage.');
    }
    if (hours) {
      hourSlot.replaceChildren(
        Charts.stackedChart(hours.buckets || [], { granularity: 'hour', title: `${key.name}: requests per hour, last 24 hours`, testid: 'detail-hour-chart' }),
      );
    } else {
      showChartError(hourSlot, 'Could not load the usage.');
    }
    const warning = long ? stillInUse(key, Charts.totals(long.buckets || []).rejected) : null;
    if (warning) {
      const box = document.createElement('p');
      box.className = 'notice notice-error still-in-use';
      box.dataset.testid = 'detail-still-in-use';
      box.append(warning.textContent, '. Whatever sends it is failing: find it by the key hint and give it a new key.');
      el('detail-notices').append(box);
    }
  }

  /** The detail view when the key cannot be read: one error with Retry, and nothing that
   *  pretends to be the key (no hint, no empty charts). */
  function showDetailError(text) {
    const view = el('key-detail');
    view.classList.add('has-failed');
    el('detail-hint').textContent = '';
    el('detail-status').replaceChildren();
    el('detail-actions').replaceChildren();
    el('detail-facts').replaceChildren();
    const box = document.createElement('div');
    box.className = 'notice notice-error';
    box.dataset.testid = 'detail-error';
    box.setAttribute('role', 'alert');
    box.append(text, ' ');
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'button button-small';
    retry.dataset.testid = 'detail-retry';
    retry.textContent = 'Retry';
    retry.addEventListener('click', () => renderKeyDetail());
    box.append(retry);
    el('detail-notices').replaceChildren(box);
  }

  function renderDetailHead(key) {
    el('detail-name').textContent = key.name;
    el('detail-hint').textContent = key.hint;
    el('detail-status').replaceChildren(statusBadge(key));

    const actions = el('detail-actions');
    actions.replaceChildren();
    const button = (testid, text, onClick, className = 'button') => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = className;
      b.dataset.testid = testid;
      b.textContent = text;
      b.addEventListener('click', () => onClick(b));
      actions.append(b);
      return b;
    };
    if (canRoll(key)) button('detail-roll', 'Roll key', (b) => openRoll(key, b));
    if (canEdit(key)) button('detail-edit', 'Edit', (b) => openEdit(key, b));
    if (key.status === 'active' && canEdit(key)) {
      const label = key.enabled === false ? 'Resume key' : 'Pause key';
      button('detail-pause', label, (b) => onTogglePause(key, b)).id = 'detail-pause';
    }
    if (key.status === 'active') {
      button('detail-revoke', 'Revoke key', (b) => openRevoke(key, b), 'button button-danger-quiet');
    }

    const notices = el('detail-notices');
    notices.replaceChildren();
    if (key.status === 'active' && key.enabled === false) {
      const box = document.createElement('p');
      box.className = 'notice notice-warning';
      box.dataset.testid = 'detail-paused';
      box.textContent = 'Paused: requests with this key get 401 disabled_api_key until it is resumed.';
      notices.append(box);
    }
    const revoked = revokedLine(key);
    if (revoked) {
      const box = document.createElement('p');
      box.className = key.revokeReason === 'reported_leaked' ? 'notice notice-warning' : 'notice';
      box.dataset.testid = 'detail-revoked';
      revoked.classList.remove('small', 'block');
      box.append(revoked);
      notices.append(box);
    }
    if (isUnused(key)) {
      const box = document.createElement('p');
      box.className = 'notice notice-warning';
      box.dataset.testid = 'detail-unused';
      box.textContent = key.lastUsedAt
        ? `Not used for ${Math.floor(daysSince(key.lastUsedAt))} days. If nothing needs it any more, revoke it.`
        : `Never used, and created ${Math.floor(daysSince(key.createdAt))} days ago. If nothing needs it, revoke it.`;
      notices.append(box);
    }

    const facts = el('detail-facts');
    facts.replaceChildren();
    const created = fact(facts, 'Created', timeElement(key.createdAt));
    const creator = personName(key.createdBy);
    if (creator) created.append(` by ${creator}`);
    fact(facts, 'Last used', key.lastUsedAt ? timeElement(key.lastUsedAt) : 'Never');
    const requests = fact(facts, 'Requests', Charts.count(Number(key.requestCount) || 0));
    requests.dataset.testid = 'detail-request-count';
    const scopes = fact(facts, 'Scopes');
    scopes.dataset.testid = 'detail-scopes';
    for (const scope of key.scopes || []) {
      const code = document.createElement('code');
      code.className = 'scope';
      code.textContent = scope;
      scopes.append(code, ' ');
    }
    const expires = fact(facts, 'Expires', key.expiresAt ? timeElement(key.expiresAt) : 'Never');
    expires.dataset.testid = 'detail-expires';
    fact(facts, 'Rate limit', rateLimitText(key));
    if (key.description) fact(facts, 'Description', key.description).dataset.testid = 'detail-description';
    const allowed = fact(facts, 'Allowed IPs');
    allowed.dataset.testid = 'detail-allowed-ips';
    if (key.allowedIps && key.allowedIps.length > 0) {
      for (const net of key.allowedIps) {
        const code = document.createElement('code');
        code.className = 'scope';
        code.textContent = net;
        allowed.append(code, ' ');
      }
    } else {
      allowed.textContent = 'Any address';
    }
    fact(facts, 'Credits', creditsText(key.credits)).dataset.testid = 'detail-credits';
    if (key.externalId) {
      const code = document.createElement('code');
      code.textContent = key.externalId;
      fact(facts, 'External ID', code).dataset.testid = 'detail-external-id';
    }
    if (key.meta) {
      const code = document.createElement('code');
      code.className = 'meta';
      code.textContent = JSON.stringify(key.meta);
      fact(facts, 'Metadata', code).dataset.testid = 'detail-meta';
    }
    if (key.rolledFrom) fact(facts, 'Replaces', relatedKeyLink(key.rolledFrom, 'the key it was rolled from'));
    if (key.replacedBy) fact(facts, 'Rolled into', relatedKeyLink(key.replacedBy, 'its new secret'));
  }

  function relatedKeyLink(keyId, text) {
    const link = document.createElement('button');
    link.type = 'button';
    link.className = 'link-button';
    link.textContent = text;
    link.addEventListener('click', () => openKeyDetail(keyId, null));
    return link;
  }

  async function loadMembers() {
    if (state.members) return state.members;
    try {
      const answer = await api('GET', workspacePath('/members'));
      state.members = new Map((answer.items || []).map((m) => [m.userId, m]));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      state.members = new Map();
    }
    return state.members;
  }

  function actorName(actor, key, members) {
    if (!actor) return 'Someone';
    if (actor.type === 'system') return 'Heffl';
    if (actor.type === 'anonymous') return null;
    if (actor.type === 'api_key') return 'An API key';
    const member = members.get(actor.id);
    if (member) return member.name || member.email;
    for (const user of [key.createdBy, key.revokedBy]) {
      if (user && user.id === actor.id) return personName(user);
    }
    return 'A former member';
  }

  async function renderKeyEvents(key, generation) {
    const list = el('detail-events');
    const note = el('detail-events-note');
    if (!canManageKeys()) {
      // The audit log is for owners and admins; the record itself still tells the main events.
      const events = [{ action: 'api_key.created', at: key.createdAt, who: personName(key.createdBy) }];
      if (key.revokedAt) events.unshift({ action: 'api_key.revoked', at: key.revokedAt, who: personName(key.revokedBy) });
      list.replaceChildren(...events.map((e) => eventItem(e.action, e.who, e.at, null)));
      note.textContent = 'The full activity log is visible to owners and admins.';
      note.hidden = false;
      return;
    }
    let page;
    let members;
    try {
      [page, members] = await Promise.all([
        api('GET', workspacePath(`/audit-events?keyId=${encodeURIComponent(key.id)}&limit=50`)),
        loadMembers(),
      ]);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (generation !== state.detailGeneration) return;
      list.replaceChildren();
      note.textContent = `Could not load the activity: ${error.message}`;
      note.hidden = false;
      return;
    }
    if (generation !== state.detailGeneration) return;
    const items = page.items || [];
    list.replaceChildren(
      ...items.map((e) => {
        const item = eventItem(e.action, actorName(e.actor, key, members), e.at, e.ip);
        const details = e.details || {};
        if (e.action === 'api_key.created' && details.rolledFrom) {
          item.append(' · ', relatedKeyLink(details.rolledFrom, 'rolled from the previous secret'));
        } else if (e.action === 'api_key.rolled' && details.newKeyId) {
          item.append(' · ', relatedKeyLink(details.newKeyId, 'replaced by the new secret'));
        }
        return item;
      }),
    );
    note.hidden = items.length > 0;
    note.textContent = items.length > 0 ? '' : 'No recorded activity.';
  }

  function eventItem(action, who, at, ip) {
    const item = document.createElement('li');
    item.dataset.testid = 'detail-event';
    const what = document.createElement('strong');
    what.textContent = EVENT_LABELS[action] || action;
    if (action === 'api_key.reported_leaked') what.className = 'reason-leaked';
    item.append(what);
    if (who) item.append(` by ${who}`);
    item.append(' · ', timeElement(at));
    if (ip) {
      const from = document.createElement('span');
      from.className = 'muted';
      from.textContent = ` · from ${ip}`;
      item.append(from);
    }
    return item;
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  function init() {
    el('signin-form').addEventListener('submit', onSignIn);
    el('signout-button').addEventListener('click', onSignOut);
    el('workspace-select').addEventListener('change', onWorkspaceChange);
    for (const radio of document.querySelectorAll('input[name="status-filter"]')) {
      radio.addEventListener('change', onFilterChange);
    }
    el('create-key-button').addEventListener('click', openCreate);
    el('create-form').addEventListener('submit', onCreate);
    el('create-cancel').addEventListener('click', () => el('create-dialog').close());
    el('copy-key-button').addEventListener('click', onCopy);
    el('new-key-done').addEventListener('click', () => {
      forgetKey();
      el('new-key-dialog').close();
    });
    el('revoke-cancel').addEventListener('click', () => el('revoke-dialog').close());
    // A name problem goes away as soon as the name is fine, not at the next submit.
    el('create-name').addEventListener('input', (event) => {
      const input = event.target;
      const length = [...input.value.trim()].length;
      if (input.getAttribute('aria-invalid') === 'true' && length > 0 && length <= MAX_NAME_CHARS) {
        input.removeAttribute('aria-invalid');
        clearBox(el('create-error'));
      }
    });
    el('edit-form').addEventListener('submit', onEditSave);
    el('edit-credits').addEventListener('change', syncCreditFields);
    el('edit-cancel').addEventListener('click', () => el('edit-dialog').close());
    el('edit-dialog').addEventListener('close', () => {
      state.editing = null;
      restoreFocus(el('edit-dialog'));
    });
    el('revoke-confirm').addEventListener('click', onRevokeConfirm);
    el('create-expiry').addEventListener('change', onExpiryChange);
    el('roll-form').addEventListener('submit', onRollConfirm);
    el('roll-cancel').addEventListener('click', () => el('roll-dialog').close());
    el('roll-dialog').addEventListener('close', () => {
      state.rollTarget = null;
      restoreFocus(el('roll-dialog'));
    });
    el('detail-back').addEventListener('click', closeKeyDetail);
    // Escape leaves the detail view, as it closes a dialog (a dialog, if open, handles it first).
    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape' || el('key-detail').hidden) return;
      if (document.querySelector('dialog[open]') || event.defaultPrevented) return;
      closeKeyDetail();
    });

    el('create-dialog').addEventListener('close', () => restoreFocus(el('create-dialog')));
    // The browser fires `close` in a later task; Escape's `cancel` comes at once, so the secret
    // leaves the page as the dialog is dismissed, not a moment after.
    el('new-key-dialog').addEventListener('cancel', forgetKey);
    el('new-key-dialog').addEventListener('close', () => {
      forgetKey();
      restoreFocus(el('new-key-dialog'));
    });
    el('revoke-dialog').addEventListener('close', () => {
      state.revokeTarget = null;
      restoreFocus(el('revoke-dialog'));
    });

    // Browsers restore a checked radio on reload; start from what is shown.
    const checked = document.querySelector('input[name="status-filter"]:checked');
    state.filter = checked ? checked.value : 'active';

    if (sessionStorage.getItem(TOKEN_STORAGE)) {
      showView('loading');
      loadSession();
    } else {
      // Left by account.js when a password reset signed this browser out.
      const notice = sessionStorage.getItem('heffl.developer.signinNotice');
      sessionStorage.removeItem('heffl.developer.signinNotice');
      if (notice) showSignIn(notice, 'success');
      else showSignIn();
    }
  }

  init();
})();
