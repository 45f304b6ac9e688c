// Settings > Developer: a workspace's webhook endpoints (docs/api.md §15), for owners and admins.
// Kept apart from app.js, which is about keys; app.js tells this script which workspace is shown
// and the caller's role there (the `heffl:workspace` event), and both share the session token in
// sessionStorage.
//
// - A signing secret exists only in its dialog's text while the dialog is open, as a new key does.
// - Everything from the API is written with textContent, never parsed as HTML.
(() => {
  'use strict';

  const EVENTS = [
    ['api_key.created', 'Key created'],
    ['api_key.updated', 'Key edited'],
    ['api_key.rolled', 'Key rolled'],
    ['api_key.revoked', 'Key revoked'],
    ['api_key.leaked', 'Key leaked'],
    ['api_key.expiring', 'Key about to expire'],
    ['api_key.credits_low', 'Key low on credits'],
    ['member.joined', 'Member joined'],
    ['member.removed', 'Member removed'],
    ['member.role_changed', 'Member role changed'],
  ];
  const EVENT_LABELS = Object.fromEntries(EVENTS);
  const STATUS_LABELS = { pending: 'Pending', delivered: 'Delivered', failed: 'Failed' };
  const FIELD_LABELS = { url: 'Endpoint URL', events: 'Events', description: 'Description' };

  const el = (id) => document.getElementById(id);
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'UTC' });

  const state = {
    workspaceId: null,
    // Bumped on every workspace change, so a late answer for another workspace is dropped.
    generation: 0,
    deleting: null,
    opener: null,
  };

  const api = (method, path, body) =>
    window.HefflApi.request(method, path, body, (field) => FIELD_LABELS[field] || field);

  const path = (suffix = '') => `/workspaces/${encodeURIComponent(state.workspaceId)}/webhooks${suffix}`;

  function show(box, text) {
    box.textContent = text;
    box.hidden = !text;
  }

  function button(text, testid, onClick, tone = '') {
    const node = document.createElement('button');
    node.type = 'button';
    node.className = `button button-small ${tone}`.trim();
    node.textContent = text;
    node.dataset.testid = testid;
    node.addEventListener('click', onClick);
    return node;
  }

  function badge(text, tone, testid) {
    const span = document.createElement('span');
    span.className = `badge badge-${tone}`;
    span.dataset.testid = testid;
    span.textContent = text;
    return span;
  }

  function utc(iso) {
    return iso ? `${dateFormat.format(new Date(iso))} UTC` : '—';
  }

  // ---------------------------------------------------------------------------------------------
  // The list

  async function load() {
    const generation = ++state.generation;
    const card = el('webhooks-card');
    show(el('webhooks-error'), '');
    let answer;
    try {
      answer = await api('GET', path());
    } catch (error) {
      if (generation !== state.generation) return;
      el('webhook-list').replaceChildren();
      el('webhooks-empty').hidden = true;
      show(el('webhooks-error'), error.message);
      el('webhooks-error').append(' ', button('Retry', 'webhooks-retry', load));
      return;
    }
    if (generation !== state.generation) return;
    card.hidden = false;
    const items = answer.items || [];
    el('webhook-list').replaceChildren(...items.map(endpointItem));
    el('webhooks-empty').hidden = items.length > 0;
  }

  function endpointItem(endpoint) {
    const item = document.createElement('li');
    item.className = 'webhook';
    item.dataset.testid = 'webhook-item';
    item.dataset.webhookId = endpoint.id;

    const head = document.createElement('div');
    head.className = 'webhook-head';
    const url = document.createElement('code');
    url.className = 'webhook-url';
    url.dataset.testid = 'webhook-item-url';
    url.textContent = endpoint.url;
    const status = !endpoint.enabled && endpoint.disabledReason === 'failing'
      ? badge('Disabled: failing for 5 days', 'revoked', 'webhook-status')
      : endpoint.enabled
        ? badge('Enabled', 'active', 'webhook-status')
        : badge('Paused', 'paused', 'webhook-status');
    head.append(url, status);

    const about = document.createElement('p');
    about.className = 'muted small webhook-about';
    const events = endpoint.events.includes('*')
      ? 'All events'
      : endpoint.events.map((name) => EVENT_LABELS[name] || name).join(', ');
    about.textContent = endpoint.description ? `${endpoint.description} · ${events}` : events;

    const actions = document.createElement('div');
    actions.className = 'webhook-actions';
    const deliveries = document.createElement('div');
    deliveries.className = 'webhook-deliveries';
    deliveries.dataset.testid = 'webhook-deliveries';
    deliveries.hidden = true;
    const toggle = button('Deliveries', 'webhook-deliveries-button', () => toggleDeliveries(endpoint, deliveries, toggle));
    toggle.setAttribute('aria-expanded', 'false');
    actions.append(
      toggle,
      button(endpoint.enabled ? 'Pause' : 'Resume', 'webhook-pause', (event) =>
        setEnabled(endpoint, !endpoint.enabled, event.currentTarget),
      ),
      button('Roll secret', 'webhook-roll', (event) => rollSecret(endpoint, event.currentTarget)),
      button('Delete', 'webhook-delete', (event) => openDelete(endpoint, event.currentTarget), 'button-danger-quiet'),
    );
    const error = document.createElement('div');
    error.className = 'notice notice-error';
    error.dataset.testid = 'webhook-item-error';
    error.setAttribute('role', 'alert');
    error.hidden = true;
    item.append(head, about, actions, error, deliveries);
    return item;
  }

  function itemError(endpoint) {
    const item = document.querySelector(`li[data-webhook-id="${CSS.escape(endpoint.id)}"]`);
    return item && item.querySelector('[data-testid="webhook-item-error"]');
  }

  async function setEnabled(endpoint, enabled, control) {
    control.disabled = true;
    try {
      await api('PATCH', path(`/${encodeURIComponent(endpoint.id)}`), { enabled });
      await load();
      announce(enabled ? 'Endpoint resumed.' : 'Endpoint paused: it gets no new deliveries.');
      const item = document.querySelector(`li[data-webhook-id="${CSS.escape(endpoint.id)}"] [data-testid="webhook-pause"]`);
      if (item) item.focus();
    } catch (error) {
      control.disabled = false;
      const box = itemError(endpoint);
      if (box) show(box, error.message);
    }
  }

  function announce(message) {
    const status = el('status');
    status.textContent = '';
    window.setTimeout(() => {
      status.textContent = message;
    }, 50);
  }

  // ---------------------------------------------------------------------------------------------
  // Deliveries

  async function toggleDeliveries(endpoint, panel, toggle) {
    const open = panel.hidden;
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open) await loadDeliveries(endpoint, panel);
  }

  async function loadDeliveries(endpoint, panel) {
    panel.replaceChildren();
    const loading = document.createElement('p');
    loading.className = 'muted small';
    loading.textContent = 'Loading deliveries…';
    panel.append(loading);
    let page;
    try {
      page = await api('GET', path(`/${encodeURIComponent(endpoint.id)}/deliveries?limit=20`));
    } catch (error) {
      const box = document.createElement('div');
      box.className = 'notice notice-error';
      box.setAttribute('role', 'alert');
      box.textContent = `${error.message} `;
      box.append(button('Retry', 'deliveries-retry', () => loadDeliveries(endpoint, panel)));
      panel.replaceChildren(box);
      return;
    }
    const items = page.items || [];
    if (items.length === 0) {
      loading.textContent = 'Nothing sent yet. Deliveries appear here as events happen.';
      return;
    }
    const table = document.createElement('table');
    table.className = 'deliveries';
    table.dataset.testid = 'deliveries-table';
    const caption = document.createElement('caption');
    caption.className = 'visually-hidden';
    caption.textContent = 'The latest deliveries to this endpoint, newest first; times in UTC';
    const head = document.createElement('tr');
    for (const title of ['Event', 'Status', 'Tries', 'Last answer', 'Sent', '']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = title;
      head.append(th);
    }
    const thead = document.createElement('thead');
    thead.append(head);
    const body = document.createElement('tbody');
    for (const delivery of items) body.append(deliveryRow(endpoint, panel, delivery));
    table.append(caption, thead, body);
    const refresh = button('Refresh', 'deliveries-refresh', () => loadDeliveries(endpoint, panel));
    panel.replaceChildren(table, refresh);
  }

  function deliveryRow(endpoint, panel, delivery) {
    const row = document.createElement('tr');
    row.dataset.testid = 'delivery-row';
    const cell = (label, content) => {
      const td = document.createElement('td');
      td.dataset.label = label;
      if (typeof content === 'string') td.textContent = content;
      else td.append(content);
      row.append(td);
      return td;
    };
    cell('Event', EVENT_LABELS[delivery.type] || delivery.type).title = `${delivery.type} · ${delivery.id}`;
    const tone = { delivered: 'active', pending: 'paused', failed: 'revoked' }[delivery.status] || 'paused';
    cell('Status', badge(STATUS_LABELS[delivery.status] || delivery.status, tone, 'delivery-status'));
    cell('Tries', String(delivery.attempts));
    const answer = delivery.lastError
      ? delivery.lastError
      : delivery.lastStatus
        ? `HTTP ${delivery.lastStatus}`
        : '—';
    cell('Last answer', answer).dataset.testid = 'delivery-answer';
    const when = delivery.status === 'pending' && delivery.nextAttemptAt
      ? `next try ${utc(delivery.nextAttemptAt)}`
      : utc(delivery.lastAttemptAt || delivery.createdAt);
    cell('Sent', when);
    const retry = button('Retry now', 'delivery-retry', async () => {
      retry.disabled = true;
      try {
        await api('POST', path(`/${encodeURIComponent(endpoint.id)}/deliveries/${encodeURIComponent(delivery.id)}/retry`));
        announce('Sent again; refresh in a moment to see how it went.');
        await loadDeliveries(endpoint, panel);
      } catch (error) {
        retry.disabled = false;
        announce(error.message);
      }
    });
    retry.setAttribute('aria-label', `Retry ${EVENT_LABELS[delivery.type] || delivery.type} now`);
    cell('', retry);
    return row;
  }

  // ---------------------------------------------------------------------------------------------
  // Add, roll, delete

  function renderEventChoices() {
    const list = el('webhook-event-list');
    if (list.childElementCount) return;
    for (const [name, label] of EVENTS) {
      const wrapper = document.createElement('label');
      wrapper.className = 'check';
      const input = document.createElement('input');
      input.type = 'checkbox';
      input.value = name;
      input.dataset.testid = `webhook-event-${name}`;
      const code = document.createElement('code');
      code.textContent = name;
      wrapper.append(input, ` ${label} `, code);
      list.append(wrapper);
    }
  }

  function openAdd(event) {
    renderEventChoices();
    el('webhook-form').reset();
    show(el('webhook-error'), '');
    syncEventChoices();
    state.opener = event.currentTarget;
    el('webhook-dialog').showModal();
    el('webhook-url').focus();
  }

  function syncEventChoices() {
    const chosen = el('webhook-form').querySelector('input[name="webhook-events"]:checked').value === 'chosen';
    for (const input of el('webhook-event-list').querySelectorAll('input')) input.disabled = !chosen;
  }

  async function onAdd(event) {
    event.preventDefault();
    const form = el('webhook-form');
    const chosen = form.querySelector('input[name="webhook-events"]:checked').value === 'chosen';
    const events = chosen
      ? [...el('webhook-event-list').querySelectorAll('input:checked')].map((input) => input.value)
      : ['*'];
    if (chosen && events.length === 0) {
      show(el('webhook-error'), 'Choose at least one event, or all events.');
      return;
    }
    const body = { url: el('webhook-url').value.trim(), events };
    const description = el('webhook-description').value.trim();
    if (description) body.description = description;
    const submit = el('webhook-submit');
    submit.disabled = true;
    try {
      const created = await api('POST', path(), body);
      el('webhook-dialog').close();
      await load();
      revealSecret(created.secret, 'Add it to your endpoint before events start arriving.');
    } catch (error) {
      show(el('webhook-error'), error.message);
      el('webhook-url').setAttribute('aria-invalid', String(/url/i.test(error.message)));
    } finally {
      submit.disabled = false;
    }
  }

  async function rollSecret(endpoint, control) {
    control.disabled = true;
    state.opener = control;
    try {
      const rolled = await api('POST', path(`/${encodeURIComponent(endpoint.id)}/secret`));
      revealSecret(rolled.secret, 'The old secret keeps signing beside it for 24 hours, so switch within a day.');
    } catch (error) {
      const box = itemError(endpoint);
      if (box) show(box, error.message);
    } finally {
      control.disabled = false;
    }
  }

  function revealSecret(secret, note) {
    el('webhook-secret-value').textContent = secret;
    el('webhook-secret-note').textContent = note;
    el('webhook-secret-feedback').textContent = '';
    el('webhook-secret-dialog').showModal();
    el('webhook-secret-copy').focus();
  }

  function forgetSecret() {
    el('webhook-secret-value').textContent = '';
    el('webhook-secret-feedback').textContent = '';
    window.getSelection().removeAllRanges();
  }

  async function copySecret() {
    const value = el('webhook-secret-value');
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      copied = await navigator.clipboard.writeText(value.textContent).then(() => true, () => false);
    }
    if (!copied) {
      const range = document.createRange();
      range.selectNodeContents(value);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
    }
    el('webhook-secret-feedback').textContent = copied
      ? 'Copied to the clipboard.'
      : 'The secret is selected: press Ctrl+C (⌘C on a Mac) to copy it.';
  }

  function openDelete(endpoint, control) {
    state.deleting = endpoint;
    state.opener = control;
    el('webhook-delete-url').textContent = endpoint.url;
    el('webhook-delete-dialog').showModal();
    el('webhook-delete-cancel').focus();
  }

  async function onDeleteConfirm() {
    const endpoint = state.deleting;
    if (!endpoint) return;
    const confirm = el('webhook-delete-confirm');
    confirm.disabled = true;
    try {
      await api('DELETE', path(`/${encodeURIComponent(endpoint.id)}`));
      state.opener = el('webhook-add-button');
      el('webhook-delete-dialog').close();
      await load();
      announce('Endpoint deleted.');
    } catch (error) {
      el('webhook-delete-dialog').close();
      const box = itemError(endpoint);
      if (box) show(box, error.message);
    } finally {
      confirm.disabled = false;
    }
  }

  function returnFocus() {
    const opener = state.opener;
    state.opener = null;
    if (document.querySelector('dialog[open]')) return;
    if (opener && opener.isConnected && !opener.disabled) opener.focus();
    else el('webhooks-heading').focus();
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  document.addEventListener('heffl:workspace', (event) => {
    const { id, role } = event.detail || {};
    state.workspaceId = id;
    state.generation += 1;
    const manages = Boolean(id) && (role === 'owner' || role === 'admin');
    el('webhooks-card').hidden = !manages;
    el('webhook-list').replaceChildren();
    el('webhooks-empty').hidden = true;
    if (manages) load();
  });

  el('webhooks-heading').tabIndex = -1;
  el('webhook-add-button').addEventListener('click', openAdd);
  el('webhook-form').addEventListener('submit', onAdd);
  el('webhook-form').addEventListener('change', (event) => {
    if (event.target.name === 'webhook-events') syncEventChoices();
  });
  el('webhook-url').addEventListener('input', () => {
    el('webhook-url').removeAttribute('aria-invalid');
  });
  el('webhook-cancel').addEventListener('click', () => el('webhook-dialog').close());
  el('webhook-dialog').addEventListener('close', returnFocus);
  el('webhook-secret-copy').addEventListener('click', copySecret);
  // At once, not at `close` (a task later): the secret leaves the page as the dialog is dismissed.
  el('webhook-secret-done').addEventListener('click', () => {
    forgetSecret();
    el('webhook-secret-dialog').close();
  });
  el('webhook-secret-dialog').addEventListener('cancel', forgetSecret);
  el('webhook-secret-dialog').addEventListener('close', () => {
    forgetSecret();
    returnFocus();
  });
  el('webhook-delete-cancel').addEventListener('click', () => el('webhook-delete-dialog').close());
  el('webhook-delete-confirm').addEventListener('click', onDeleteConfirm);
  el('webhook-delete-dialog').addEventListener('close', () => {
    state.deleting = null;
    returnFocus();
  });
})();
