// Projects (/api/v1/projects): everyone sees those they have a role in; server admins
// create and delete them, and see who has which role in each.
import { el, table, formatTime, message } from '../../lib.js';
import { field, confirmAction, dataOr } from './common.js';

const DEFAULT_PROJECT = 'default';

// "alice: admin, bob: viewer" for one project, from the users list (server admins only).
function membersOf(users, key) {
  const members = users
    .filter((u) => !u.admin && u.roles && u.roles[key])
    .map((u) => `${u.username}: ${u.roles[key]}`);
  return members.length ? members.join(', ') : '—';
}

export async function render(section, ctx) {
  const { api, rights } = ctx;
  const listNode = el('div');

  async function load() {
    const [projects, users] = await Promise.all([
      api('GET', '/api/v1/projects').then((b) => b.data || []),
      rights.isAdmin ? dataOr(api, '/api/v1/users', []) : Promise.resolve(null),
    ]);
    const columns = [
      { key: 'key', label: 'Key' },
      { key: 'name', label: 'Name' },
      { key: 'clients', label: 'Clients' },
      { key: 'role', label: 'Your role' },
      { key: 'created_at', label: 'Created', render: (p) => formatTime(p.created_at) },
    ];
    if (users) {
      columns.push({ key: 'members', label: 'Users with a role', render: (p) => membersOf(users, p.key) });
    }
    if (rights.isAdmin && rights.writes) {
      columns.push({ key: 'actions', label: 'Actions', render: (p) => (p.key === DEFAULT_PROJECT
        ? el('span', { class: 'hint' }, 'always there')
        : el('button', { type: 'button', class: 'danger', 'aria-label': `Delete project ${p.key}`, onclick: () => remove(p) }, 'Delete')) });
    }
    listNode.replaceChildren(table(columns, projects, {
      label: 'Projects', empty: 'You have no role in any project.', rowAttrs: (p) => ({ 'data-project': p.key }),
    }));
  }

  async function remove(project) {
    if (!await confirmAction(`Delete project ${project.key}? Only an empty project (no clients, no agent credentials) can be deleted.`)) return;
    try {
      await api('DELETE', `/api/v1/projects/${encodeURIComponent(project.key)}`);
      message(`Project ${project.key} deleted.`, 'ok');
      await load();
    } catch (error) {
      message(`Deleting ${project.key}: ${error.message}`, 'error');
    }
  }

  await load();
  section.appendChild(el('p', { class: 'hint' },
    'Every agent belongs to the project of the credential it logs in with. Give users roles in a project under Users and roles.'));
  section.appendChild(listNode);

  if (rights.isAdmin && rights.writes) {
    const [keyWrap, keyInput] = field('Key', { name: 'project-key', required: true, autocomplete: 'off', pattern: '[a-z0-9][a-z0-9_\\-]*', maxlength: 63, hint: 'Lower-case letters, digits, - and _; used in URLs.' });
    const [nameWrap, nameInput] = field('Name', { name: 'project-name', autocomplete: 'off', hint: 'Optional; the key when left empty.' });
    const form = el('form', { class: 'card form', 'aria-label': 'Create a project', onsubmit: async (event) => {
      event.preventDefault();
      const key = keyInput.value.trim();
      try {
        await api('POST', '/api/v1/projects', { key, name: nameInput.value.trim() || undefined });
        message(`Project ${key} created.`, 'ok');
        form.reset();
        await load();
      } catch (error) {
        message(`Creating project ${key}: ${error.message}`, 'error');
      }
    } }, el('h3', {}, 'Create a project'), keyWrap, nameWrap,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Create project')));
    section.appendChild(form);
  }
}
