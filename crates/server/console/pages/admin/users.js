// Users and their roles per project (server admins): /api/v1/users, with the projects
// from /api/v1/projects and the user groups from /api/v1/user-groups.
import { el, table, formatTime, message } from '../../lib.js';
import { field, confirmAction, dataOr } from './common.js';

const ADMIN_GROUP = 'Administrators';
const ROLES = ['viewer', 'tunnels', 'admin'];

function rolesText(roles) {
  const entries = Object.entries(roles || {});
  return entries.length ? entries.map(([project, role]) => `${project}: ${role}`).join(', ') : '—';
}

// One select per project: no role, viewer, tunnels or admin. Returns [node, read()].
function roleEditor(projects, roles, disabled) {
  // Projects the list does not show (one deleted since) keep their roles unless changed.
  const keys = [...new Set([...projects.map((p) => p.key), ...Object.keys(roles)])];
  const pairs = keys.map((key) => {
    const [wrap, select] = field(`Role in ${key}`, {
      tag: 'select', name: `role-${key}`, disabled,
      options: [['', 'no role', !roles[key]],
        ...ROLES.map((role) => [role, role, roles[key] === role])],
    });
    return [key, wrap, select];
  });
  const node = el('fieldset', { class: 'roles' }, el('legend', {}, 'Roles per project'),
    pairs.length ? pairs.map(([, wrap]) => wrap) : el('p', {}, 'No projects yet.'));
  const read = () => Object.fromEntries(pairs.filter(([, , select]) => select.value)
    .map(([key, , select]) => [key, select.value]));
  return [node, read];
}

function groupsOf(user) {
  return (user.groups || []).filter((group) => group !== ADMIN_GROUP);
}

function parseGroups(text) {
  return text.split(',').map((g) => g.trim()).filter((g) => g && g !== ADMIN_GROUP);
}

// The body fields that say "admin" and "groups" consistently: the API refuses them
// when they disagree.
function adminAndGroups(isAdmin, groups) {
  return { admin: isAdmin, groups: isAdmin ? [ADMIN_GROUP, ...groups] : groups };
}

export async function render(section, ctx) {
  const { api } = ctx;
  const listNode = el('div');
  const editNode = el('div', { class: 'editor', 'aria-live': 'polite' });
  let projects = [];
  let groupNames = [];

  async function load() {
    const [users, projectList, groups] = await Promise.all([
      api('GET', '/api/v1/users').then((b) => b.data || []),
      dataOr(api, '/api/v1/projects', []),
      dataOr(api, '/api/v1/user-groups', []),
    ]);
    projects = projectList || [];
    groupNames = (groups || []).map((g) => g.name).filter(Boolean);
    listNode.replaceChildren(table([
      { key: 'username', label: 'User' },
      { key: 'admin', label: 'Server admin', render: (u) => (u.admin ? 'yes' : 'no') },
      { key: 'roles', label: 'Roles per project', render: (u) => rolesText(u.roles) },
      { key: 'groups', label: 'User groups', render: (u) => groupsOf(u).join(', ') || '—' },
      { key: 'source', label: 'Kept in', render: (u) => (u.source === 'db' ? 'database' : u.source) },
      { key: 'created_at', label: 'Created', render: (u) => formatTime(u.created_at) },
      { key: 'password_expired', label: 'Must change password', render: (u) => (u.password_expired ? 'yes' : 'no') },
      { key: 'actions', label: 'Actions', render: (u) => (u.source !== 'db'
        ? el('span', { class: 'hint' }, 'in the configuration')
        : el('div', { class: 'row-actions' },
          el('button', { type: 'button', onclick: () => edit(u), 'aria-label': `Edit ${u.username}` }, 'Edit'),
          el('button', { type: 'button', class: 'danger', onclick: () => remove(u), 'aria-label': `Delete ${u.username}` }, 'Delete'))) },
    ], users, { label: 'Users', empty: 'No users.', rowAttrs: (u) => ({ 'data-user': u.username }) }));
  }

  async function remove(user) {
    if (!await confirmAction(`Delete user ${user.username}? Their sessions and API tokens stop working at once.`)) return;
    try {
      await api('DELETE', `/api/v1/users/${encodeURIComponent(user.username)}`);
      message(`User ${user.username} deleted.`, 'ok');
      editNode.replaceChildren();
      await load();
    } catch (error) {
      message(`Deleting ${user.username}: ${error.message}`, 'error');
    }
  }

  function edit(user) {
    const [adminWrap, adminBox] = field('Server-wide administrator', { type: 'checkbox', name: 'edit-admin', checked: user.admin });
    const [rolesNode, readRoles] = roleEditor(projects, user.roles || {}, false);
    const [groupsWrap, groupsInput] = field('User groups (comma separated)', {
      name: 'edit-groups', value: groupsOf(user).join(', '),
      hint: groupNames.length ? `Existing: ${groupNames.join(', ')}` : 'No user groups exist yet.',
    });
    const [passwordWrap, passwordInput] = field('New password (leave empty to keep)', { type: 'password', name: 'edit-password', autocomplete: 'new-password' });
    const [expiredWrap, expiredBox] = field('Must choose a new password at next login', { type: 'checkbox', name: 'edit-expired', checked: user.password_expired });
    const form = el('form', { class: 'card form', 'aria-label': `Edit user ${user.username}`, onsubmit: async (event) => {
      event.preventDefault();
      const body = {
        ...adminAndGroups(adminBox.checked, parseGroups(groupsInput.value)),
        roles: readRoles(),
        password_expired: expiredBox.checked,
      };
      if (passwordInput.value) body.password = passwordInput.value;
      try {
        await api('PUT', `/api/v1/users/${encodeURIComponent(user.username)}`, body);
        message(`User ${user.username} saved.`, 'ok');
        editNode.replaceChildren();
        await load();
      } catch (error) {
        message(`Saving ${user.username}: ${error.message}`, 'error');
      }
    } },
    el('h3', {}, `Edit ${user.username}`),
    adminWrap, rolesNode, groupsWrap, passwordWrap, expiredWrap,
    el('div', { class: 'actions' },
      el('button', { type: 'submit', class: 'primary' }, 'Save'),
      el('button', { type: 'button', onclick: () => editNode.replaceChildren() }, 'Cancel')));
    editNode.replaceChildren(form);
    adminBox.focus();
  }

  function createForm() {
    const [nameWrap, nameInput] = field('User name', { name: 'new-username', required: true, autocomplete: 'off' });
    const [passwordWrap, passwordInput] = field('Password', { type: 'password', name: 'new-password', required: true, autocomplete: 'new-password' });
    const [adminWrap, adminBox] = field('Server-wide administrator', { type: 'checkbox', name: 'new-admin' });
    const [groupsWrap, groupsInput] = field('User groups (comma separated)', {
      name: 'new-groups', hint: groupNames.length ? `Existing: ${groupNames.join(', ')}` : 'Optional.',
    });
    const [expiredWrap, expiredBox] = field('Must choose a new password at first login', { type: 'checkbox', name: 'new-expired' });
    const [rolesNode, readRoles] = roleEditor(projects, {}, false);
    const form = el('form', { class: 'card form', 'aria-label': 'Create a user', onsubmit: async (event) => {
      event.preventDefault();
      const username = nameInput.value.trim();
      const body = {
        username,
        password: passwordInput.value,
        ...adminAndGroups(adminBox.checked, parseGroups(groupsInput.value)),
        roles: readRoles(),
        password_expired: expiredBox.checked,
      };
      try {
        await api('POST', '/api/v1/users', body);
        message(`User ${username} created.`, 'ok');
        form.reset();
        await load();
      } catch (error) {
        message(`Creating ${username}: ${error.message}`, 'error');
      }
    } },
    el('h3', {}, 'Create a user'),
    nameWrap, passwordWrap, adminWrap, rolesNode, groupsWrap, expiredWrap,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Create user')));
    return form;
  }

  await load();
  section.appendChild(el('p', { class: 'hint' },
    'A role applies in one project: viewer sees its agents and tunnels, tunnels also opens and closes tunnels, admin does everything in it. Server-wide administrators may do everything everywhere.'));
  section.appendChild(listNode);
  section.appendChild(editNode);
  section.appendChild(createForm());
}
