// The audit log (#/audit): GET /api/v1/auditlog with RPort's filters, a table and paging.
// Server admins see everyone's entries; other users see their own (the API decides).
import { el, table, formatTime, message } from '../lib.js';

const PAGE_SIZES = [10, 25, 50, 100];

// Kept while the console is open so that coming back to the page keeps the filter.
const remembered = {
  username: '', action: '', client: '', project: '', since: '', until: '',
  limit: 25, offset: 0, sort: '-timestamp',
};

// rportd's action names the filter offers (free text is accepted too).
const KNOWN_ACTIONS = [
  'login', 'logout', 'login.failed', 'agent.login',
  'tunnel.create', 'tunnel.close', 'tunnel.acl', 'tunnel.move',
  'client.attributes', 'client.acl', 'client.delete',
  'clientgroup.create', 'clientgroup.update', 'clientgroup.delete',
  'user.create', 'user.update', 'user.delete', 'user.password', 'user.reload',
  'user.session.delete', 'user.sessions.delete', 'user.totp.create', 'user.totp.delete',
  'user_group.update', 'user_group.delete',
  'token.create', 'token.update', 'token.delete',
  'clientauth.create', 'clientauth.delete', 'project.create', 'project.delete',
  'create', 'delete', 'update', 'success', 'failed',
];

let idCounter = 0;
function uniqueId(stem) {
  idCounter += 1;
  return `audit-${stem}-${idCounter}`;
}

// A labelled input; returns [wrapper, input].
function field(label, attrs) {
  const id = uniqueId(attrs.name || 'field');
  const input = el(attrs.tag || 'input', { ...attrs, tag: undefined, id });
  return [el('div', { class: 'field' }, el('label', { for: id }, label), input), input];
}

// A `datetime-local` value (the browser's local time) as RFC 3339 in UTC.
function toRfc3339(local) {
  if (!local) return '';
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

// The query string of the current filter, in RPort's list options.
export function auditQuery(state, isAdmin) {
  const query = new URLSearchParams();
  const add = (key, value) => { if (value && String(value).trim()) query.append(key, String(value).trim()); };
  if (isAdmin) add('filter[username]', state.username);
  add('filter[action]', state.action);
  // A client by id or by host name, as one filter over both fields.
  add('filter[client_id|client_hostname]', state.client);
  add('filter[project]', state.project);
  add('filter[timestamp][since]', toRfc3339(state.since));
  add('filter[timestamp][until]', toRfc3339(state.until));
  query.append('sort', state.sort);
  query.append('page[limit]', String(state.limit));
  query.append('page[offset]', String(state.offset));
  return query.toString();
}

export async function render(main, ctx) {
  const me = ctx.me || {};
  const isAdmin = Boolean(me.admin);
  const adminProjects = Object.entries(me.roles || {})
    .filter(([, role]) => role === 'admin').map(([project]) => project);
  const state = remembered;

  main.appendChild(el('h1', {}, 'Audit log'));
  main.appendChild(el('p', { class: 'hint' }, isAdmin
    ? 'Every action taken through the API and by agents, newest first.'
    : adminProjects.length
      ? 'Your own actions; choose a project you administer to see all of its entries.'
      : 'Your own actions, newest first.'));

  const [userField, userInput] = field('User', { name: 'username', type: 'search', value: state.username, autocomplete: 'off' });
  const [actionField, actionInput] = field('Action', { name: 'action', type: 'search', value: state.action, list: 'audit-actions', autocomplete: 'off' });
  const actionList = el('datalist', { id: 'audit-actions' }, KNOWN_ACTIONS.map((a) => el('option', { value: a })));
  const [clientField, clientInput] = field('Client (id or host name)', { name: 'client', type: 'search', value: state.client, autocomplete: 'off' });
  const projectChoices = isAdmin ? null : adminProjects;
  let projectField = null;
  let projectInput = null;
  if (isAdmin) {
    [projectField, projectInput] = field('Project', { name: 'project', type: 'search', value: state.project, autocomplete: 'off' });
  } else if (projectChoices.length) {
    [projectField, projectInput] = field('Project', { tag: 'select', name: 'project' });
    projectInput.appendChild(el('option', { value: '' }, 'My own actions'));
    for (const project of projectChoices) {
      projectInput.appendChild(el('option', { value: project, selected: project === state.project }, project));
    }
  }
  const [sinceField, sinceInput] = field('Since', { name: 'since', type: 'datetime-local', value: state.since, step: '1' });
  const [untilField, untilInput] = field('Until', { name: 'until', type: 'datetime-local', value: state.until, step: '1' });
  const [sizeField, sizeInput] = field('Rows per page', { tag: 'select', name: 'limit' });
  for (const size of PAGE_SIZES) {
    sizeInput.appendChild(el('option', { value: String(size), selected: size === state.limit }, String(size)));
  }

  const results = el('div', { class: 'audit-results' });
  const summary = el('p', { class: 'summary', 'aria-live': 'polite' });
  const previous = el('button', { type: 'button', onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, '← Previous');
  const next = el('button', { type: 'button', onclick: () => { state.offset += state.limit; load(); } }, 'Next →');
  const pager = el('nav', { class: 'pager', 'aria-label': 'Audit log pages' }, previous, summary, next);

  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log', onsubmit: (event) => {
    event.preventDefault();
    state.username = userInput.value;
    state.action = actionInput.value;
    state.client = clientInput.value;
    state.project = projectInput ? projectInput.value : '';
    state.since = sinceInput.value;
    state.until = untilInput.value;
    state.limit = Number(sizeInput.value) || 25;
    state.offset = 0;
    load();
  } },
  isAdmin ? userField : null, actionField, actionList, clientField, projectField, sinceField, untilField, sizeField,
  el('div', { class: 'actions' },
    el('button', { type: 'submit', class: 'primary' }, 'Filter'),
    el('button', { type: 'button', onclick: () => {
      for (const input of [userInput, actionInput, clientInput, sinceInput, untilInput]) input.value = '';
      if (projectInput) projectInput.value = '';
      form.requestSubmit();
    } }, 'Clear')));

  main.appendChild(form);
  main.appendChild(results);
  main.appendChild(pager);

  function sortOf(field) {
    if (state.sort === field) return 'ascending';
    if (state.sort === `-${field}`) return 'descending';
    return 'none';
  }
  function sortBy(field) {
    return () => {
      state.sort = state.sort === `-${field}` ? field : `-${field}`;
      state.offset = 0;
      load();
    };
  }

  // Made again for each load: the sort marks follow the current sort.
  const columns = () => [
    { key: 'timestamp', label: 'Time', render: (row) => formatTime(row.timestamp), sort: sortOf('timestamp'), onSort: sortBy('timestamp') },
    { key: 'username', label: 'User', sort: sortOf('username'), onSort: sortBy('username') },
    { key: 'remote_ip', label: 'Address' },
    { key: 'rportd_action', label: 'Action', render: (row) => row.rportd_action || row.action, sort: sortOf('action'), onSort: sortBy('action') },
    { key: 'result', label: 'Result', render: (row) => el('span', { class: `badge ${row.result === 'success' ? 'ok' : 'error'}` }, row.result || row.action) },
    { key: 'affected_id', label: 'Affected' },
    { key: 'client_id', label: 'Client', render: (row) => [row.client_hostname, row.client_id].filter(Boolean).join(' · ') || '—' },
    { key: 'project', label: 'Project' },
    { key: 'detail', label: 'Detail' },
  ];

  let serial = 0;
  async function load() {
    const mine = ++serial;
    results.setAttribute('aria-busy', 'true');
    try {
      const body = await ctx.api('GET', `/api/v1/auditlog?${auditQuery(state, isAdmin)}`);
      if (mine !== serial) return;
      const rows = (body && body.data) || [];
      const count = body && body.meta ? Number(body.meta.count) : rows.length;
      if (rows.length === 0 && state.offset > 0 && state.offset >= count) {
        state.offset = Math.max(0, count - (count % state.limit || state.limit));
        load();
        return;
      }
      results.replaceChildren(table(columns(), rows, { label: 'Audit log entries', empty: 'No entries match.' }));
      const first = rows.length ? state.offset + 1 : 0;
      summary.textContent = `${first}–${state.offset + rows.length} of ${count}`;
      previous.disabled = state.offset === 0;
      next.disabled = state.offset + rows.length >= count;
    } catch (error) {
      if (mine !== serial) return;
      results.replaceChildren(el('p', { class: 'error' }, `Could not read the audit log: ${error.message}`));
      message(`Audit log: ${error.message}`, 'error');
    } finally {
      if (mine === serial) results.removeAttribute('aria-busy');
    }
  }

  await load();
}
