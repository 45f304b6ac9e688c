// Settings > Developer: sign in, pick a workspace, list, create and revoke API keys.
//
// Rules this file keeps (the browser test checks the first three):
// - A new key's secret exists only in the "new key" dialog's text while it is open: it is never
//   stored in a variable that outlives the request, in storage, or in the URL.
// - The session token lives in sessionStorage only and travels in the Authorization header.
// - Everything from the API is written with textContent, never parsed as HTML.
// - Only /app/v1 on this origin is called (the Content-Security-Policy allows nothing else).
'use strict';

(() => {
  const API_BASE = '/app/v1';
  const TOKEN_STORAGE = 'heffl.developer.sessionToken';
  const WORKSPACE_STORAGE = 'heffl.developer.workspaceId';
  const MAX_NAME_CHARS = 100;

  const FIELD_LABELS = { name: 'Name', email: 'Email', password: 'Password' };
  const ROLE_LABELS = { owner: 'Owner', admin: 'Admin', member: 'Member', viewer: 'Viewer' };
  const EMPTY_TEXT = {
    active: 'No active keys. Create one to connect your website forms, data sync or Zapier.',
    revoked: 'No revoked keys.',
    all: 'No keys yet. Create one to connect your website forms, data sync or Zapier.',
  };

  const el = (id) => document.getElementById(id);
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const longDateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });

  const state = {
    user: null,
    workspaces: [],
    workspaceId: null,
    filter: 'active',
    // Increases with every list request, so a slow answer for an old filter or workspace
    // cannot overwrite the answer for the current one.
    listGeneration: 0,
    revokeTarget: null,
  };

  // ---------------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || null;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_STORAGE);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = {
      method,
      headers,
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API_BASE + path, init);
    } catch {
      throw new ApiError(0, 'NETWORK', "Can't reach the server. Check your connection and try again.");
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = data && data.error;
      throw new ApiError(
        response.status,
        (error && error.code) || `HTTP_${response.status}`,
        (error && error.message) || `The server answered with status ${response.status}. Try again.`,
        error && error.details,
      );
    }
    return data;
  }

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

  function timeElement(iso) {
    const time = document.createElement('time');
    const date = new Date(iso);
    time.dateTime = iso;
    time.textContent = dateFormat.format(date);
    time.title = longDateFormat.format(date);
    return time;
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
    state.user = null;
    state.workspaces = [];
    state.workspaceId = null;
    state.listGeneration += 1;
    el('key-rows').replaceChildren();
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
    el('account-email').textContent = session.user.name
      ? `${session.user.name} (${session.user.email})`
      : session.user.email;
    renderWorkspaces();
    showView('app');
    el('page-heading').focus();
    if (state.workspaceId) await loadKeys();
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
    el('workspace-select').closest('.workspace-picker').hidden = state.workspaces.length === 0;
    renderRole();
  }

  function currentWorkspace() {
    return state.workspaces.find((w) => w.id === state.workspaceId) || null;
  }

  function renderRole() {
    const workspace = currentWorkspace();
    const role = workspace ? workspace.role : null;
    el('workspace-role').textContent = role ? `Your role: ${ROLE_LABELS[role] || role}` : '';
    const seesOwnOnly = role === 'member' || role === 'viewer';
    el('scope-note').hidden = !seesOwnOnly;
    el('scope-role').textContent = seesOwnOnly ? (ROLE_LABELS[role] || role).toLowerCase() : '';
  }

  async function onWorkspaceChange() {
    state.workspaceId = el('workspace-select').value;
    sessionStorage.setItem(WORKSPACE_STORAGE, state.workspaceId);
    renderRole();
    const workspace = currentWorkspace();
    await loadKeys();
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
        showText(errorBox, `Could not load the keys: ${error.message}`);
      }
      return;
    }
    if (generation !== state.listGeneration) return;
    table.setAttribute('aria-busy', 'false');
    clearBox(errorBox);
    renderKeys(Array.isArray(list.items) ? list.items : []);
  }

  function renderKeys(keys) {
    const rows = el('key-rows');
    rows.replaceChildren();
    for (const key of keys) rows.append(keyRow(key));
    const empty = el('keys-empty');
    empty.textContent = keys.length === 0 ? EMPTY_TEXT[state.filter] : '';
    empty.hidden = keys.length > 0;
    el('key-table').hidden = keys.length === 0;
  }

  function keyRow(key) {
    const row = document.createElement('tr');
    row.dataset.testid = 'key-row';
    row.dataset.keyId = key.id;
    row.dataset.status = key.status;
    if (key.status === 'revoked') row.classList.add('is-revoked');

    const [nameCell, name] = cell('Name', 'cell-name');
    const nameText = document.createElement('span');
    nameText.className = 'key-name';
    nameText.dataset.testid = 'key-name';
    nameText.textContent = key.name;
    name.append(nameText);

    const [hintCell, hint] = cell('Key', 'cell-hint');
    const hintCode = document.createElement('code');
    hintCode.dataset.testid = 'key-hint';
    hintCode.textContent = key.hint;
    hint.append(hintCode);

    const [createdCell, created] = cell('Created', 'cell-created');
    created.append(timeElement(key.createdAt));

    const [createdByCell, createdBy] = cell('Created by', 'cell-creator');
    const creator = key.createdBy || {};
    const who = document.createElement('span');
    who.textContent = creator.name || creator.email || 'Unknown';
    createdBy.append(who);
    if (creator.name && creator.email) {
      const email = document.createElement('span');
      email.className = 'muted small block';
      email.textContent = creator.email;
      createdBy.append(email);
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

    const [statusCell, status] = cell('Status', 'cell-status');
    const badge = document.createElement('span');
    badge.className = `badge badge-${key.status === 'active' ? 'active' : 'revoked'}`;
    badge.dataset.testid = 'key-status';
    badge.textContent = key.status === 'active' ? 'Active' : 'Revoked';
    status.append(badge);
    if (key.status !== 'active' && key.revokedAt) {
      const when = document.createElement('span');
      when.className = 'muted small block';
      when.append('on ', timeElement(key.revokedAt));
      status.append(when);
    }

    const [actionsCell, actions] = cell('Actions', 'cell-actions');
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

    row.append(nameCell, hintCell, createdCell, createdByCell, lastUsedCell, statusCell, actionsCell);
    return row;
  }

  async function onFilterChange(event) {
    state.filter = event.target.value;
    await loadKeys();
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
    } else if (!el('app-view').hidden) {
      el('keys-heading').focus();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Create

  function openCreate() {
    const input = el('create-name');
    input.value = '';
    input.removeAttribute('aria-invalid');
    clearBox(el('create-error'));
    openDialog(el('create-dialog'), el('create-key-button'), input);
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
    clearBox(errorBox);
    const submit = el('create-submit');
    setBusy(submit, true, 'Creating…');
    try {
      const created = await api('POST', workspacePath('/api-keys'), { name });
      returnFocus.delete(el('create-dialog'));
      el('create-dialog').close();
      revealKey(created.name, created.key);
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

  function revealKey(name, secret) {
    el('new-key-name').textContent = name;
    el('new-key-value').textContent = secret;
    el('copy-feedback').textContent = '';
    el('copy-key-button').textContent = 'Copy';
    openDialog(el('new-key-dialog'), el('create-key-button'), el('copy-key-button'));
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
    await loadKeys();
    announce(`Revoked the key ${target.name}. Requests with it are now refused.`);
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
    el('new-key-done').addEventListener('click', () => el('new-key-dialog').close());
    el('revoke-cancel').addEventListener('click', () => el('revoke-dialog').close());
    el('revoke-confirm').addEventListener('click', onRevokeConfirm);

    el('create-dialog').addEventListener('close', () => restoreFocus(el('create-dialog')));
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
      showSignIn();
    }
  }

  init();
})();
