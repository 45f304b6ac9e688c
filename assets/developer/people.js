// Settings > Developer: the workspace's people, for owners and admins (docs/api.md §5, §6): each
// member's role, changed in place, and removal (which revokes the keys they made in the
// workspace); and a new workspace for anyone. Kept apart from app.js, which is about keys; app.js
// says which workspace is shown, the caller's role and who they are (`heffl:workspace`), and both
// share the session token in sessionStorage. The rules are the server's; the page says them
// beside the controls they disable, and shows the server's refusals in words.
(() => {
  'use strict';

  const WORKSPACE_STORAGE = 'heffl.developer.workspaceId';
  const ROLES = [
    ['owner', 'Owner'],
    ['admin', 'Admin'],
    ['member', 'Member'],
    ['viewer', 'Viewer'],
  ];
  const ROLE_LABELS = Object.fromEntries(ROLES);

  const el = (id) => document.getElementById(id);

  const state = {
    workspaceId: null,
    role: null,
    userId: null,
    generation: 0,
    removing: null,
    opener: null,
  };

  const api = (method, path, body) =>
    window.HefflApi.request(method, path, body, (field) => (field === 'name' ? 'Name' : field));

  const membersPath = (suffix = '') => `/workspaces/${encodeURIComponent(state.workspaceId)}/members${suffix}`;

  function announce(message) {
    const status = el('status');
    status.textContent = '';
    window.setTimeout(() => {
      status.textContent = message;
    }, 50);
  }

  function show(box, text) {
    box.textContent = text;
    box.hidden = !text;
  }

  /** Why the caller may not change this member, in words; null when they may. */
  function refusal(member) {
    if (member.userId === state.userId) return 'This is you: another owner or admin changes your role.';
    if (member.role === 'owner' && state.role !== 'owner') return 'Only owners change or remove an owner.';
    return null;
  }

  // ---------------------------------------------------------------------------------------------
  // The list

  async function load() {
    const generation = ++state.generation;
    show(el('people-error'), '');
    let answer;
    try {
      answer = await api('GET', membersPath());
    } catch (error) {
      if (generation !== state.generation) return;
      el('people-list').replaceChildren();
      show(el('people-error'), `Could not load the people: ${error.message} `);
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'button button-small';
      retry.dataset.testid = 'people-retry';
      retry.textContent = 'Retry';
      retry.addEventListener('click', load);
      el('people-error').append(retry);
      return;
    }
    if (generation !== state.generation) return;
    const items = answer.items || [];
    el('people-list').replaceChildren(...items.map(memberItem));
    const owners = items.filter((m) => m.role === 'owner').length;
    el('people-note').textContent =
      `${items.length} ${items.length === 1 ? 'person' : 'people'}. ` +
      (owners === 1 ? 'A workspace keeps at least one owner.' : 'Owners manage everyone; admins manage everyone but owners.');
  }

  function memberItem(member) {
    const item = document.createElement('li');
    item.className = 'person';
    item.dataset.testid = 'person';
    item.dataset.userId = member.userId;

    const who = document.createElement('div');
    who.className = 'person-who';
    const name = document.createElement('strong');
    name.dataset.testid = 'person-name';
    name.textContent = member.name || member.email;
    const email = document.createElement('span');
    email.className = 'muted small block';
    email.textContent = member.userId === state.userId ? `${member.email} · you` : member.email;
    who.append(name, email);

    const controls = document.createElement('div');
    controls.className = 'person-controls';
    const selectId = `role-${member.userId}`;
    const label = document.createElement('label');
    label.className = 'visually-hidden';
    label.htmlFor = selectId;
    label.textContent = `Role of ${member.name || member.email}`;
    const select = document.createElement('select');
    select.id = selectId;
    select.dataset.testid = 'person-role';
    for (const [value, text] of ROLES) {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = text;
      // Only owners make owners.
      option.disabled = value === 'owner' && state.role !== 'owner';
      select.append(option);
    }
    select.value = member.role;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'button button-small button-danger-quiet';
    remove.dataset.testid = 'person-remove';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${member.name || member.email}`);
    const why = refusal(member);
    select.disabled = Boolean(why);
    remove.disabled = Boolean(why);
    controls.append(label, select, remove);

    const note = document.createElement('p');
    note.className = 'muted small person-note';
    note.dataset.testid = 'person-note';
    note.textContent = why || '';
    note.hidden = !why;
    const error = document.createElement('div');
    error.className = 'notice notice-error';
    error.dataset.testid = 'person-error';
    error.setAttribute('role', 'alert');
    error.hidden = true;

    select.addEventListener('change', () => changeRole(member, select, error));
    remove.addEventListener('click', () => openRemove(member, remove));
    item.append(who, controls, note, error);
    return item;
  }

  async function changeRole(member, select, error) {
    const role = select.value;
    select.disabled = true;
    show(error, '');
    try {
      await api('PATCH', membersPath(`/${encodeURIComponent(member.userId)}`), { role });
      announce(`${member.name || member.email} is now ${ROLE_LABELS[role].toLowerCase()}.`);
      await load();
      const again = document.querySelector(`li[data-user-id="${CSS.escape(member.userId)}"] select`);
      if (again) again.focus();
    } catch (failure) {
      // The server's rule in words (the last owner, say); the select goes back to the truth.
      select.value = member.role;
      select.disabled = false;
      show(error, failure.message);
    }
  }

  function openRemove(member, opener) {
    state.removing = member;
    state.opener = opener;
    el('member-remove-name').textContent = member.name || member.email;
    el('member-remove-dialog').showModal();
    el('member-remove-cancel').focus();
  }

  async function onRemoveConfirm() {
    const member = state.removing;
    if (!member) return;
    const confirm = el('member-remove-confirm');
    confirm.disabled = true;
    try {
      await api('DELETE', membersPath(`/${encodeURIComponent(member.userId)}`));
      state.opener = null;
      el('member-remove-dialog').close();
      announce(`${member.name || member.email} was removed, and their keys revoked.`);
      await load();
      el('people-heading').focus();
    } catch (failure) {
      el('member-remove-dialog').close();
      const item = document.querySelector(`li[data-user-id="${CSS.escape(member.userId)}"]`);
      const box = item && item.querySelector('[data-testid="person-error"]');
      if (box) show(box, failure.message);
    } finally {
      confirm.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // A new workspace

  function openWorkspace(event) {
    state.opener = event.currentTarget;
    el('workspace-form').reset();
    show(el('workspace-error'), '');
    el('workspace-dialog').showModal();
    el('workspace-name').focus();
  }

  async function onWorkspaceCreate(event) {
    event.preventDefault();
    const submit = el('workspace-submit');
    submit.disabled = true;
    try {
      const created = await api('POST', '/workspaces', { name: el('workspace-name').value.trim() });
      // The page starts again in the new workspace: app.js reads the session afresh.
      sessionStorage.setItem(WORKSPACE_STORAGE, created.id);
      window.location.reload();
    } catch (failure) {
      show(el('workspace-error'), failure.message);
      el('workspace-name').focus();
      submit.disabled = false;
    }
  }

  function returnFocus() {
    const opener = state.opener;
    state.opener = null;
    if (document.querySelector('dialog[open]')) return;
    if (opener && opener.isConnected && !opener.disabled) opener.focus();
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  document.addEventListener('heffl:workspace', (event) => {
    const { id, role, userId } = event.detail || {};
    state.workspaceId = id;
    state.role = role;
    state.userId = userId;
    state.generation += 1;
    const manages = Boolean(id) && (role === 'owner' || role === 'admin');
    el('people-card').hidden = !manages;
    el('people-list').replaceChildren();
    if (manages) load();
  });

  el('member-remove-cancel').addEventListener('click', () => el('member-remove-dialog').close());
  el('member-remove-confirm').addEventListener('click', onRemoveConfirm);
  el('member-remove-dialog').addEventListener('close', () => {
    state.removing = null;
    returnFocus();
  });
  el('workspace-new-button').addEventListener('click', openWorkspace);
  el('workspace-first-button').addEventListener('click', openWorkspace);
  el('workspace-form').addEventListener('submit', onWorkspaceCreate);
  // A refusal is about what was sent: once the name changes, it no longer applies.
  el('workspace-name').addEventListener('input', () => show(el('workspace-error'), ''));
  el('workspace-cancel').addEventListener('click', () => el('workspace-dialog').close());
  el('workspace-dialog').addEventListener('close', returnFocus);
})();
