// Settings > Developer: invitations and the password (docs/api.md §10). Kept apart from app.js, which
// is about keys; the two share only the session token in sessionStorage.
//
// - An invitation link is `/settings/developer#invitation=<token>`. The fragment never reaches
//   the server; this script takes the token out of the address bar before anything else runs
//   (history.replaceState) and sends it only in request bodies.
// - The page shows the workspace and role first (POST /invitations/lookup), then offers what
//   fits: "Join" when signed in as the invited email, else signing in or creating an account.
// - "Forgot password?" (GET /auth/options says whether the server emails links): the emailed
//   link is `/settings/developer#reset=<token>`, taken out of the address bar the same way. A
//   server without email gets the operator's command instead.
(() => {
  'use strict';

  const TOKEN_STORAGE = 'heffl.developer.sessionToken';
  const WORKSPACE_STORAGE = 'heffl.developer.workspaceId';
  const MIN_PASSWORD_CHARS = 12;
  const ROLE_LABELS = { owner: 'Owner', admin: 'Admin', member: 'Member', viewer: 'Viewer' };

  // Taken at once, before the page does anything else with the address: a token in the
  // address bar would reach the history, a bookmark, or a screenshot.
  function takeToken(name) {
    const match = new RegExp(`^#${name}=([^&]*)`).exec(window.location.hash);
    if (!match) return null;
    history.replaceState(history.state, '', window.location.pathname + window.location.search);
    try {
      return decodeURIComponent(match[1]).trim();
    } catch {
      return match[1];
    }
  }
  const invitationToken = takeToken('invitation');
  const resetToken = invitationToken === null ? takeToken('reset') : null;
  // A link pasted into a tab already on this page changes only the fragment: load it afresh,
  // so it is taken as above.
  window.addEventListener('hashchange', () => {
    if (/^#(invitation|reset)=/.test(window.location.hash)) window.location.reload();
  });

  const el = (id) => document.getElementById(id);

  const api = (method, path, body) => window.HefflApi.request(method, path, body, fieldLabel);

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

  // -------------------------------------------------------------------------------------------
  // Inviting people: owners and admins of the workspace app.js shows (its 'heffl:workspace'
  // event). With email on the link goes only to the invited address, so the list says where
  // the email is ("Sent to …", or why not) and offers Resend; without it, the link is shown
  // once to copy, as the API returns it.

  const invites = { workspace: null, generation: 0, refresh: null };
  const EMAIL_FAILURES = {
    connection_failed: 'the mail server could not be reached',
    timeout: 'the mail server did not answer in time',
    tls_failed: 'a secure connection to the mail server failed',
    rejected: 'the mail server refused it',
    deferred: 'the mail server asked to try later',
    invalid_address: 'the address cannot be written to',
    queue_full: 'too many emails were waiting',
  };

  const when = (at) => new Date(at).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }) + ' UTC';

  function invitesPath(suffix = '') {
    return `/workspaces/${encodeURIComponent(invites.workspace.id)}/invitations${suffix}`;
  }

  function onWorkspace(event) {
    const workspace = event.detail;
    const manages = Boolean(workspace) && (workspace.role === 'owner' || workspace.role === 'admin');
    invites.workspace = manages ? workspace : null;
    invites.generation += 1;
    window.clearTimeout(invites.refresh);
    el('invites-card').hidden = !manages;
    show(el('invite-result'), '');
    show(el('invite-error'), '');
    el('invite-rows').replaceChildren();
    if (!manages) return;
    // Admins invite below owner only.
    el('invite-role').querySelector('option[value="owner"]').hidden = workspace.role !== 'owner';
    loadInvitations();
  }

  function emailState(item) {
    if (item.emailStatus === 'sent') return { text: `Sent to ${item.email} · ${when(item.emailedAt)}` };
    if (item.emailStatus === 'pending') return { text: `Sending to ${item.email}…` };
    if (item.emailStatus === 'failed') {
      const error = item.emailError || {};
      const why = EMAIL_FAILURES[error.reason] || 'it could not be sent';
      return { text: `Not sent to ${item.email}: ${why}${error.at ? ` (${when(error.at)})` : ''}. Resend when the mail server is back.`, failed: true };
    }
    return { text: `Link handed over · expires ${when(item.expiresAt)}` };
  }

  function invitationRow(item) {
    const li = document.createElement('li');
    li.dataset.testid = 'invite-row';
    const who = document.createElement('div');
    who.className = 'invite-who';
    const email = document.createElement('strong');
    email.textContent = item.email;
    const role = document.createElement('span');
    role.className = 'muted';
    role.textContent = ` · ${ROLE_LABELS[item.role] || item.role}`;
    const state = document.createElement('span');
    const { text, failed } = emailState(item);
    state.className = `invite-state${failed ? ' is-failed' : ' muted'}`;
    state.dataset.testid = 'invite-state';
    state.textContent = text;
    who.append(email, role, state);
    const actions = document.createElement('div');
    actions.className = 'invite-actions';
    if (item.emailStatus) {
      const resend = document.createElement('button');
      resend.type = 'button';
      resend.className = 'button button-small';
      resend.dataset.testid = 'invite-resend';
      resend.textContent = 'Resend';
      resend.setAttribute('aria-label', `Resend the invitation to ${item.email}`);
      resend.addEventListener('click', () => onResend(item, resend));
      actions.append(resend);
    }
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'button button-small button-quiet';
    cancel.dataset.testid = 'invite-cancel';
    cancel.textContent = 'Cancel';
    cancel.setAttribute('aria-label', `Cancel the invitation to ${item.email}`);
    cancel.addEventListener('click', () => onCancelInvitation(item, cancel));
    actions.append(cancel);
    li.append(who, actions);
    return li;
  }

  async function loadInvitations() {
    if (!invites.workspace) return;
    const generation = invites.generation;
    let list;
    try {
      list = await api('GET', invitesPath());
    } catch (error) {
      if (generation === invites.generation) show(el('invite-error'), error.message);
      return;
    }
    if (generation !== invites.generation) return;
    const items = list.items || [];
    el('invite-rows').replaceChildren(...items.map(invitationRow));
    el('invites-empty').hidden = items.length > 0;
    el('invites-note').textContent = `People join ${invites.workspace.name} only by accepting.`;
    // An email still on its way: look again shortly, to show "Sent" or why not.
    window.clearTimeout(invites.refresh);
    if (items.some((item) => item.emailStatus === 'pending')) {
      invites.refresh = window.setTimeout(loadInvitations, 1000);
    }
  }

  async function onInvite(event) {
    event.preventDefault();
    const email = el('invite-email');
    const address = email.value.trim();
    show(el('invite-result'), '');
    if (!address.includes('@')) {
      email.setAttribute('aria-invalid', 'true');
      show(el('invite-error'), 'Enter the email address of the person to invite.');
      email.focus();
      return;
    }
    email.removeAttribute('aria-invalid');
    show(el('invite-error'), '');
    const button = el('invite-submit');
    busy(button, true, 'Inviting…');
    try {
      const created = await api('POST', invitesPath(), { email: address, role: el('invite-role').value });
      email.value = '';
      const result = el('invite-result');
      if (created.token) {
        // No email on this server: the link is shown this once, to hand over.
        result.textContent = `Send ${created.email} this link (shown once, valid 7 days):`;
        const link = document.createElement('input');
        link.className = 'invite-link';
        link.readOnly = true;
        link.dataset.testid = 'invite-link';
        link.setAttribute('aria-label', 'Invitation link');
        link.value = `${window.location.origin}/settings/developer#invitation=${created.token}`;
        result.append(link);
        result.hidden = false;
        link.select();
      } else {
        // Whether the email went out shows on its row ("Sent to …", or why not).
        show(result, `Invited ${created.email}: the link is emailed to that address only; its row below says whether it was sent.`);
      }
      announce(`Invited ${created.email}.`);
      await loadInvitations();
    } catch (error) {
      show(el('invite-error'), error.message);
    } finally {
      busy(button, false);
    }
  }

  async function onResend(item, button) {
    busy(button, true, 'Resending…');
    show(el('invite-error'), '');
    try {
      await api('POST', invitesPath(`/${encodeURIComponent(item.id)}/resend`));
      show(el('invite-result'), `A new link is on its way to ${item.email}; the previous one no longer works.`);
      announce(`Resent the invitation to ${item.email}.`);
      await loadInvitations();
    } catch (error) {
      show(el('invite-error'), error.message);
      busy(button, false);
    }
  }

  async function onCancelInvitation(item, button) {
    busy(button, true, 'Cancelling…');
    show(el('invite-error'), '');
    try {
      await api('DELETE', invitesPath(`/${encodeURIComponent(item.id)}`));
      show(el('invite-result'), `Cancelled the invitation to ${item.email}.`);
      announce(`Cancelled the invitation to ${item.email}.`);
      await loadInvitations();
    } catch (error) {
      show(el('invite-error'), error.message);
      busy(button, false);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Forgot password

  async function offerRecovery() {
    let options = { passwordReset: false };
    try {
      options = await api('GET', '/auth/options');
    } catch {
      // An old server or none at all: say what always works.
    }
    el('forgot-button').hidden = !options.passwordReset;
    el('forgot-operator').hidden = Boolean(options.passwordReset);
  }

  function onForgot() {
    const form = el('forgot-form');
    form.hidden = !form.hidden;
    el('forgot-button').setAttribute('aria-expanded', String(!form.hidden));
    if (form.hidden) return;
    const email = el('forgot-email');
    if (!email.value) email.value = el('signin-email').value.trim();
    show(el('forgot-sent'), '');
    email.focus();
  }

  async function onRequestReset(event) {
    event.preventDefault();
    const errorBox = el('forgot-error');
    const email = el('forgot-email');
    const address = email.value.trim();
    show(el('forgot-sent'), '');
    if (!address.includes('@')) {
      email.setAttribute('aria-invalid', 'true');
      show(errorBox, 'Enter the email address you sign in with.');
      email.focus();
      return;
    }
    email.removeAttribute('aria-invalid');
    show(errorBox, '');
    const button = el('forgot-submit');
    busy(button, true, 'Sending…');
    try {
      await api('POST', '/auth/password-reset', { email: address });
      // The server does not say whether the address has an account, so neither does this.
      show(el('forgot-sent'), `If ${address} has an account, a link to choose a new password is on its way. It works once, for an hour.`);
      announce('Check your email for a link to reset your password.');
    } catch (error) {
      show(errorBox, error.message);
    } finally {
      busy(button, false);
    }
  }

  function openReset() {
    document.body.classList.add('has-reset');
    el('reset-view').hidden = false;
    el('reset-heading').focus();
  }

  function closeReset() {
    document.body.classList.remove('has-reset');
    el('reset-view').hidden = true;
  }

  async function onReset(event) {
    event.preventDefault();
    const errorBox = el('reset-error');
    const password = el('reset-password');
    if (password.value.length < MIN_PASSWORD_CHARS) {
      password.setAttribute('aria-invalid', 'true');
      show(errorBox, `Choose a password of at least ${MIN_PASSWORD_CHARS} characters.`);
      password.focus();
      return;
    }
    password.removeAttribute('aria-invalid');
    show(errorBox, '');
    const button = el('reset-submit');
    busy(button, true, 'Setting…');
    try {
      await api('POST', '/auth/password-reset/confirm', { token: resetToken, password: password.value });
      password.value = '';
      // Every session of the account ended, this browser's too: sign in afresh.
      sessionStorage.removeItem(TOKEN_STORAGE);
      sessionStorage.setItem('heffl.developer.signinNotice', 'Your password was changed. Sign in with your new password.');
      window.location.reload();
    } catch (error) {
      password.value = '';
      if (error.reason === 'reset_token_not_found') {
        el('reset-form').hidden = true;
        show(el('reset-notice'), `${error.message} Use "Forgot password?" on the sign-in page.`);
      } else {
        show(errorBox, error.message);
        password.focus();
      }
      busy(button, false);
    }
  }

  function init() {
    addPasswordButton();
    el('forgot-button').addEventListener('click', onForgot);
    el('forgot-form').addEventListener('submit', onRequestReset);
    el('reset-form').addEventListener('submit', onReset);
    el('reset-dismiss').addEventListener('click', closeReset);
    el('invite-form').addEventListener('submit', onInvite);
    document.addEventListener('heffl:workspace', onWorkspace);
    offerRecovery();
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
    if (resetToken !== null) openReset();
  }

  init();
})();
