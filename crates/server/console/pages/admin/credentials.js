// Agent credentials (/api/v1/clients-auth): the id and password an agent logs in with,
// each bound to a project. A generated password is shown once, when it is made.
import { el, table, message } from '../../lib.js';
import { field, confirmAction, shownOnce, dataOr } from './common.js';

export async function render(section, ctx) {
  const { api, rights } = ctx;
  const listNode = el('div');
  const onceNode = el('div', { 'aria-live': 'polite' });
  const status = await dataOr(api, '/api/v1/status', {});
  // Credentials of the configuration (`auth` or `auth_file`) cannot be changed here.
  const managed = !status || status.clients_auth_mode !== 'Read Only';
  const projects = await dataOr(api, '/api/v1/projects', []);
  const adminProjects = (projects || []).map((p) => p.key).filter((key) => rights.adminOf(key));

  async function load() {
    // The API pages this list (RPort's page[limit] defaults); ask for a large page.
    const body = await api('GET', '/api/v1/clients-auth?page[limit]=500');
    const rows = (body && body.data) || [];
    const columns = [
      { key: 'id', label: 'Credential id' },
      { key: 'project', label: 'Project' },
      { key: 'clients', label: 'Clients using it' },
      { key: 'clients_connected', label: 'Connected now' },
      { key: 'source', label: 'Kept in', render: (c) => (c.source === 'db' ? 'database' : 'configuration') },
    ];
    if (managed && adminProjects.length) {
      columns.push({ key: 'actions', label: 'Actions', render: (c) => (c.source === 'db' && rights.adminOf(c.project)
        ? el('button', { type: 'button', class: 'danger', 'aria-label': `Delete credential ${c.id}`, onclick: () => remove(c) }, 'Delete')
        : '—') });
    }
    listNode.replaceChildren(table(columns, rows, {
      label: 'Agent credentials', empty: 'No agent credentials.', rowAttrs: (c) => ({ 'data-credential': c.id }),
    }));
  }

  async function remove(credential) {
    const connected = Number(credential.clients_connected) || 0;
    const warning = connected
      ? `Delete credential ${credential.id}? ${connected} connected agent(s) use it and will be disconnected.`
      : `Delete credential ${credential.id}? Agents using it can no longer connect.`;
    if (!await confirmAction(warning)) return;
    const force = connected ? '?force=true' : '';
    try {
      await api('DELETE', `/api/v1/clients-auth/${encodeURIComponent(credential.id)}${force}`);
      message(`Credential ${credential.id} deleted.`, 'ok');
      await load();
    } catch (error) {
      message(`Deleting ${credential.id}: ${error.message}`, 'error');
    }
  }

  await load();
  section.appendChild(el('p', { class: 'hint' },
    'An agent logs in with a credential id and password (its config\'s auth = "ID:PASSWORD") and joins the credential\'s project.'));
  section.appendChild(onceNode);
  section.appendChild(listNode);

  if (!managed) {
    section.appendChild(el('p', { class: 'hint' }, 'Agent credentials come from rportd\'s configuration here, so they are read only.'));
    return;
  }
  if (!adminProjects.length || !rights.writes) return;

  const [idWrap, idInput] = field('Credential id', { name: 'credential-id', required: true, autocomplete: 'off', maxlength: 100, hint: 'Visible characters without ":".' });
  const [projectWrap, projectSelect] = field('Project', {
    tag: 'select', name: 'credential-project',
    options: adminProjects.map((key) => [key, key, key === 'default']),
  });
  const [passwordWrap, passwordInput] = field('Password', {
    type: 'password', name: 'credential-password', autocomplete: 'new-password', minlength: 12,
    hint: 'Leave empty to have rportd generate a strong one (shown once).',
  });
  const form = el('form', { class: 'card form', 'aria-label': 'Create an agent credential', onsubmit: async (event) => {
    event.preventDefault();
    const id = idInput.value.trim();
    const body = { id, project: projectSelect.value };
    if (passwordInput.value) body.password = passwordInput.value;
    try {
      const reply = await api('POST', '/api/v1/clients-auth', body);
      const created = (reply && reply.data) || {};
      form.reset();
      if (created.password) {
        const box = shownOnce(`Password of credential ${id}`, created.password);
        onceNode.replaceChildren(box);
        box.focus();
      } else {
        message(`Credential ${id} created with the password you chose.`, 'ok');
      }
      await load();
    } catch (error) {
      message(`Creating credential ${id}: ${error.message}`, 'error');
    }
  } }, el('h3', {}, 'Create an agent credential'), idWrap, projectWrap, passwordWrap,
  el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Create credential')));
  section.appendChild(form);
}
