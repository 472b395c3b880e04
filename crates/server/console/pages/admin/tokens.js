// My API tokens (/api/v1/me/tokens): for scripts and rportcli. A new token is shown once;
// rportd keeps only its hash. Tokens can be renamed, re-scoped, given an expiry, deleted.
import { el, table, formatTime, message } from '../../lib.js';
import { field, confirmAction, shownOnce, dataOr } from './common.js';

const SCOPES = [
  ['read', 'read: only reads'],
  ['read+write', 'read+write: everything you may do'],
  ['clients-auth', 'clients-auth: only agent credentials'],
];

// A `datetime-local` value as RFC 3339 (UTC), or undefined when empty.
function expiryOf(local) {
  if (!local) return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

// An RFC 3339 time as a `datetime-local` value in the browser's zone.
function localValue(time) {
  if (!time) return '';
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) return '';
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 19);
}

export async function render(section, ctx) {
  const { api, rights } = ctx;
  // API tokens cannot make or change API tokens (the API refuses it).
  const canWrite = rights.writes && !rights.apiToken;
  const scopes = SCOPES.filter(([scope]) => scope !== 'clients-auth' || rights.isAdmin);
  const listNode = el('div');
  const onceNode = el('div', { 'aria-live': 'polite' });
  const editNode = el('div', { 'aria-live': 'polite' });
  const projects = await dataOr(api, '/api/v1/projects', []);

  async function load() {
    const body = await api('GET', '/api/v1/me/tokens');
    const tokens = (body && body.data) || [];
    const columns = [
      { key: 'name', label: 'Name' },
      { key: 'prefix', label: 'Prefix' },
      { key: 'scope', label: 'Scope' },
      { key: 'project', label: 'Project', render: (t) => t.project || 'all of yours' },
      { key: 'created_at', label: 'Created', render: (t) => formatTime(t.created_at) },
      { key: 'expires_at', label: 'Expires', render: (t) => (t.expires_at ? formatTime(t.expires_at) : 'never') },
      { key: 'last_used_at', label: 'Last used', render: (t) => (t.last_used_at ? formatTime(t.last_used_at) : 'never') },
    ];
    if (canWrite) {
      columns.push({ key: 'actions', label: 'Actions', render: (t) => el('div', { class: 'row-actions' },
        el('button', { type: 'button', 'aria-label': `Change token ${t.name}`, onclick: () => edit(t) }, 'Change'),
        el('button', { type: 'button', class: 'danger', 'aria-label': `Delete token ${t.name}`, onclick: () => remove(t) }, 'Delete')) });
    }
    listNode.replaceChildren(table(columns, tokens, {
      label: 'My API tokens', empty: 'You have no API tokens.', rowAttrs: (t) => ({ 'data-token': t.id }),
    }));
  }

  async function remove(token) {
    if (!await confirmAction(`Delete API token ${token.name}? Scripts using it stop working at once.`)) return;
    try {
      await api('DELETE', `/api/v1/me/tokens/${encodeURIComponent(token.id)}`);
      message(`Token ${token.name} deleted.`, 'ok');
      editNode.replaceChildren();
      await load();
    } catch (error) {
      message(`Deleting token ${token.name}: ${error.message}`, 'error');
    }
  }

  function edit(token) {
    const [nameWrap, nameInput] = field('Name', { name: 'edit-token-name', value: token.name, required: true, maxlength: 249 });
    const [scopeWrap, scopeSelect] = field('Scope', {
      tag: 'select', name: 'edit-token-scope', options: scopes.map(([v, t]) => [v, t, v === token.scope]),
    });
    const [expiryWrap, expiryInput] = field('Expires (optional)', { type: 'datetime-local', name: 'edit-token-expires', value: localValue(token.expires_at), step: '1' });
    const form = el('form', { class: 'card form', 'aria-label': `Change token ${token.name}`, onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api('PUT', `/api/v1/me/tokens/${encodeURIComponent(token.id)}`, {
          name: nameInput.value.trim(), scope: scopeSelect.value, expires_at: expiryOf(expiryInput.value),
        });
        message(`Token ${nameInput.value.trim()} changed.`, 'ok');
        editNode.replaceChildren();
        await load();
      } catch (error) {
        message(`Changing token ${token.name}: ${error.message}`, 'error');
      }
    } }, el('h3', {}, `Change ${token.name}`), nameWrap, scopeWrap, expiryWrap,
    el('div', { class: 'actions' },
      el('button', { type: 'submit', class: 'primary' }, 'Save'),
      el('button', { type: 'button', onclick: () => editNode.replaceChildren() }, 'Cancel')));
    editNode.replaceChildren(form);
    nameInput.focus();
  }

  await load();
  section.appendChild(el('p', { class: 'hint' },
    'Send a token as "Authorization: Bearer TOKEN" (or RPORT_API_TOKEN for rportcli). Its rights are yours, cut down to its scope and project.'));
  section.appendChild(onceNode);
  section.appendChild(listNode);
  section.appendChild(editNode);
  if (!canWrite) {
    section.appendChild(el('p', { class: 'hint' }, 'Log in with your password to create or change API tokens.'));
    return;
  }

  const [nameWrap, nameInput] = field('Name', { name: 'token-name', required: true, maxlength: 249, autocomplete: 'off' });
  const [scopeWrap, scopeSelect] = field('Scope', {
    tag: 'select', name: 'token-scope', options: scopes.map(([v, t]) => [v, t, v === 'read']),
  });
  const [projectWrap, projectSelect] = field('Project', {
    tag: 'select', name: 'token-project',
    options: [['', 'all projects you have a role in', true], ...(projects || []).map((p) => [p.key, p.key, false])],
  });
  const [expiryWrap, expiryInput] = field('Expires (optional)', { type: 'datetime-local', name: 'token-expires', step: '1' });
  const form = el('form', { class: 'card form', 'aria-label': 'Create an API token', onsubmit: async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    const body = { name, scope: scopeSelect.value };
    if (projectSelect.value) body.project = projectSelect.value;
    const expires = expiryOf(expiryInput.value);
    if (expires) body.expires_at = expires;
    try {
      const reply = await api('POST', '/api/v1/me/tokens', body);
      const created = (reply && reply.data) || {};
      form.reset();
      if (created.token) {
        const box = shownOnce(`API token ${name}`, created.token);
        onceNode.replaceChildren(box);
        box.focus();
      }
      await load();
    } catch (error) {
      message(`Creating token ${name}: ${error.message}`, 'error');
    }
  } }, el('h3', {}, 'Create an API token'), nameWrap, scopeWrap, projectWrap, expiryWrap,
  el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Create token')));
  section.appendChild(form);
}
