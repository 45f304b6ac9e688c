// Settings > Developer: invitations and the password (docs/api.md §10). Kept apart from app.js, which
// is about keys; the two share only the session token in sessionStorage.
//
// - An invitation link is `/settings/developer#invitation=<token>`. The fragment never reaches
//   the server; this script takes the token out of the address bar before anything else runs
//   (history.replaceState) and sends it only in request bodies.
// - The page shows the workspace and role first (POST /invitations/lookup), then offers what
//   fits: "Join" when signed in as the invited email, else signing in or creating an account.
(() => {
  'use strict';

  const API_BASE = '/app/v1';
  const TOKEN_STORAGE = 'heffl.developer.sessionToken';
  const WORKSPACE_STORAGE = 'heffl.developer.workspaceId';
  const MIN_PASSWORD_CHARS = 12;
  const ROLE_LABELS = { owner: 'Owner', admin: 'Admin', member: 'Member', viewer: 'Viewer' };

  // Taken at once, before the page does anything else with the address.
  const invitationToken = (() => {
    const match = /^#invitation=([^&]*)/.exec(window.location.hash);
    if (!match) return null;
    history.replaceState(history.state, '', window.location.pathname + window.location.search);
    try {
      return decodeURIComponent(match[1]).trim();
    } catch {
      return match[1];
    }
  })();

  const el = (id) => document.getElementById(id);

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const session = sessionStorage.getItem(TOKEN_STORAGE);
    if (session) headers.Authorization = `Bearer ${session}`;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API_BASE + path, init);
    } catch {
      throw Object.assign(new Error("Can't reach the server. Check your connection and try again."), { status: 0 });
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
      const error = (data && data.error) || {};
      const issues = (error.details && error.details.issues) || [];
      const message = issues.length
        ? issues.map((i) => `${fieldLabel(i.field)} ${i.message}.`).join(' ')
        : error.message || `The server answered with status ${response.status}. Try again.`;
      throw Object.assign(new Error(message), {
        status: response.status,
        reason: error.details && error.details.reason,
      });
    }
    return data;
  }

  function fieldLabel(field) {
    const labels = { name: 'Your name', password: 'Password', currentPassword: 'Current password', newPassword: 'New password' };
    return labels[field] || field;
  }

  function show(box, text) {
    box.textContent = text;
    box.hidden = !text;
  }

  function announce(message) {
    const status = el('status');
    if (!status) return;
    status.textContent = '';
    window.setTimeout(() => {
      status.textContent = message;
    }, 50);
  }

  function busy(button, on, label) {
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = label;
      button.disabled = true;
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      button.disabled = false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Invitations

  const invitation = { preview: null };

  function closeInvitation() {
    document.body.classList.remove('has-invitation');
    el('invitation-view').hidden = true;
  }

  /** Signed in as someone: the page reloads into the keys view, on the joined workspace. */
  function enterWorkspace(workspaceId, message) {
    sessionStorage.setItem(WORKSPACE_STORAGE, workspaceId);
    sessionStorage.setItem('heffl.developer.flash', message);
    window.location.reload();
  }

  async function openInvitation() {
    document.body.classList.add('has-invitation');
    el('invitation-view').hidden = false;
    el('invitation-heading').focus();
    let preview;
    try {
      preview = await api('POST', '/invitations/lookup', { token: invitationToken });
    } catch (error) {
      show(el('invitation-summary'), '');
      const notice = el('invitation-notice');
      notice.className = 'notice notice-error';
      show(notice, error.message);
      return;
    }
    invitation.preview = preview;
    const role = ROLE_LABELS[preview.role] || preview.role;
    el('invitation-summary').textContent =
      `${preview.invitedBy} invited ${preview.email} to join ${preview.workspace.name} as ${role === 'Admin' || role === 'Owner' ? 'an' : 'a'} ${role}.`;
    el('invitation-signin-email').value = preview.email;
    el('invitation-create-email').value = preview.email;

    let signedInAs = null;
    if (sessionStorage.getItem(TOKEN_STORAGE)) {
      try {
        signedInAs = (await api('GET', '/session')).user;
      } catch {
        sessionStorage.removeItem(TOKEN_STORAGE);
      }
    }
    if (signedInAs && signedInAs.email.toLowerCase() === preview.email.toLowerCase()) {
      el('invitation-join-as').textContent = `You are signed in as ${signedInAs.email}.`;
      el('invitation-join-button').textContent = `Join ${preview.workspace.name}`;
      el('invitation-join').hidden = false;
    } else if (signedInAs) {
      const notice = el('invitation-notice');
      notice.className = 'notice notice-warning';
      show(notice, `You are signed in as ${signedInAs.email}, but this invitation is for ${preview.email}. Sign out, then open the link again.`);
    } else {
      el('invitation-signin-form').hidden = false;
      el('invitation-create-form').hidden = false;
    }
  }

  async function onJoin() {
    const button = el('invitation-join-button');
    busy(button, true, 'Joining…');
    try {
      const joined = await api('POST', '/invitations/accept', { token: invitationToken });
      enterWorkspace(joined.workspace.id, `You joined ${joined.workspace.name}.`);
    } catch (error) {
      const notice = el('invitation-notice');
      notice.className = 'notice notice-error';
      show(notice, error.message);
      busy(button, false);
    }
  }

  async function onSignInAndJoin(event) {
    event.preventDefault();
    const errorBox = el('invitation-signin-error');
    const password = el('invitation-signin-password');
    if (!password.value) {
      show(errorBox, 'Enter your password.');
      password.focus();
      return;
    }
    const button = event.submitter || el('invitation-signin-form').querySelector('button[type="submit"]');
    busy(button, true, 'Signing in…');
    try {
      const login = await api('POST', '/auth/login', {
        email: invitation.preview.email,
        password: password.value,
      });
      sessionStorage.setItem(TOKEN_STORAGE, login.token);
      password.value = '';
      const joined = await api('POST', '/invitations/accept', { token: invitationToken });
      enterWorkspace(joined.workspace.id, `You joined ${joined.workspace.name}.`);
    } catch (error) {
      show(errorBox, error.message);
      password.value = '';
      password.focus();
      busy(button, false);
    }
  }

  async function onCreateAccount(event) {
    event.preventDefault();
    const errorBox = el('invitation-create-error');
    const name = el('invitation-name');
    const password = el('invitation-password');
    const problems = [];
    if (!name.value.trim()) problems.push('Enter your name.');
    if (password.value.length < MIN_PASSWORD_CHARS) {
      problems.push(`Choose a password of at least ${MIN_PASSWORD_CHARS} characters.`);
    }
    name.toggleAttribute('aria-invalid', !name.value.trim());
    password.toggleAttribute('aria-invalid', password.value.length < MIN_PASSWORD_CHARS);
    if (problems.length) {
      show(errorBox, problems.join(' '));
      (name.value.trim() ? password : name).focus();
      return;
    }
    show(errorBox, '');
    const button = event.submitter || el('invitation-create-form').querySelector('button[type="submit"]');
    busy(button, true, 'Creating your account…');
    try {
      const joined = await api('POST', '/invitations/accept', {
        token: invitationToken,
        name: name.value.trim(),
        password: password.value,
      });
      password.value = '';
      sessionStorage.setItem(TOKEN_STORAGE, joined.token);
      enterWorkspace(joined.workspace.id, `Welcome to ${joined.workspace.name}.`);
    } catch (error) {
      if (error.reason === 'invalid_credentials') {
        // The server never says whether the email has an account; the person knows.
        show(errorBox, 'If this email already has an account, use its own password (or sign in above).');
        el('invitation-signin-password').focus();
      } else {
        show(errorBox, error.message);
      }
      busy(button, false);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Change password

  function addPasswordButton() {
    const account = document.querySelector('[data-testid="account"]');
    const signOut = el('signout-button');
    if (!account || !signOut) return;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'button button-quiet';
    button.id = 'password-button';
    button.dataset.testid = 'password-button';
    button.textContent = 'Change password';
    button.addEventListener('click', () => {
      el('password-form').reset();
      show(el('password-error'), '');
      el('password-dialog').showModal();
      el('password-current').focus();
    });
    account.insertBefore(button, signOut);
  }

  async function onChangePassword(event) {
    event.preventDefault();
    const errorBox = el('password-error');
    const current = el('password-current');
    const fresh = el('password-new');
    if (!current.value) {
      show(errorBox, 'Enter your current password.');
      current.focus();
      return;
    }
    if (fresh.value.length < MIN_PASSWORD_CHARS) {
      show(errorBox, `Choose a new password of at least ${MIN_PASSWORD_CHARS} characters.`);
      fresh.focus();
      return;
    }
    const button = el('password-submit');
    busy(button, true, 'Changing…');
    try {
      await api('POST', '/session/password', {
        currentPassword: current.value,
        newPassword: fresh.value,
      });
      el('password-form').reset();
      el('password-dialog').close();
      announce('Your password was changed. Your other sessions were signed out.');
    } catch (error) {
      show(errorBox, error.status === 403 ? 'That is not your current password.' : error.message);
      current.value = '';
      current.focus();
    } finally {
      busy(button, false);
    }
  }

  function init() {
    addPasswordButton();
    el('password-form').addEventListener('submit', onChangePassword);
    el('password-cancel').addEventListener('click', () => el('password-dialog').close());
    el('invitation-join-button').addEventListener('click', onJoin);
    el('invitation-signin-form').addEventListener('submit', onSignInAndJoin);
    el('invitation-create-form').addEventListener('submit', onCreateAccount);
    el('invitation-dismiss').addEventListener('click', closeInvitation);
    const flash = sessionStorage.getItem('heffl.developer.flash');
    if (flash) {
      sessionStorage.removeItem('heffl.developer.flash');
      announce(flash);
    }
    if (invitationToken !== null) openInvitation();
  }

  init();
})();
