// My sessions (/api/v1/me/sessions): every login of mine that is still valid, this one
// marked; end one, or all but this one.
import { el, table, formatTime, message } from '../../lib.js';
import { confirmAction } from './common.js';

export async function render(section, ctx) {
  const { api, rights } = ctx;
  const listNode = el('div');
  const endOthers = el('button', { type: 'button', class: 'danger', onclick: () => removeOthers() }, 'End all other sessions');

  async function load() {
    const body = await api('GET', '/api/v1/me/sessions');
    const sessions = (body && body.data) || [];
    const columns = [
      { key: 'session_id', label: 'Session', render: (s) => (s.current
        ? el('span', {}, String(s.session_id), ' ', el('strong', { class: 'badge ok' }, 'this session'))
        : String(s.session_id)) },
      { key: 'ip_address', label: 'Address' },
      { key: 'user_agent', label: 'Browser or program' },
      { key: 'last_access_at', label: 'Last used', render: (s) => formatTime(s.last_access_at) },
      { key: 'expires_at', label: 'Expires', render: (s) => formatTime(s.expires_at) },
    ];
    if (rights.writes) {
      columns.push({ key: 'actions', label: 'Actions', render: (s) => (s.current
        ? el('span', { class: 'hint' }, 'log out to end it')
        : el('button', { type: 'button', class: 'danger', 'aria-label': `End session ${s.session_id}`, onclick: () => remove(s) }, 'End')) });
    }
    listNode.replaceChildren(table(columns, sessions, {
      label: 'My sessions', empty: 'No sessions.',
      rowAttrs: (s) => ({ 'data-session': s.session_id, class: s.current ? 'current' : null }),
    }));
    endOthers.hidden = !rights.writes || !sessions.some((s) => !s.current);
  }

  async function remove(session) {
    if (!await confirmAction(`End session ${session.session_id} (${session.user_agent || 'unknown program'})? Whoever uses it must log in again.`, 'End session')) return;
    try {
      await api('DELETE', `/api/v1/me/sessions/${encodeURIComponent(session.session_id)}`);
      message(`Session ${session.session_id} ended.`, 'ok');
      await load();
    } catch (error) {
      message(`Ending session ${session.session_id}: ${error.message}`, 'error');
    }
  }

  async function removeOthers() {
    if (!await confirmAction('End all your other sessions? Every other browser and script logged in as you must log in again; API tokens keep working.', 'End other sessions')) return;
    try {
      await api('DELETE', '/api/v1/me/sessions');
      message('All other sessions ended.', 'ok');
      await load();
    } catch (error) {
      message(`Ending other sessions: ${error.message}`, 'error');
    }
  }

  await load();
  section.appendChild(el('p', { class: 'hint' }, 'Each login (console, rportcli, scripts using /login) is a session until it expires or is ended. API tokens are listed under My API tokens.'));
  section.appendChild(listNode);
  section.appendChild(el('div', { class: 'actions' }, endOthers));
}
