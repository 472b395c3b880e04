// Tunnels: every live and past tunnel the caller may see, filterable by device,
// status and scheme; live ones can be closed (forced, whatever their connections).
import { el, table, message, coalesced } from '../lib.js';
import { tunnelColumns, mayOpenTunnels } from './device.js';
import { watchDevices } from './devices.js';

export async function render(main, ctx) {
  const state = { tunnels: [], device: '', status: 'live', scheme: '' };
  main.appendChild(el('h1', {}, 'Tunnels'));
  const device = el('input', { type: 'search', id: 'tunnels-device', placeholder: 'device id' });
  const status = el('select', { id: 'tunnels-status' },
    ['live', 'closed', 'terminated', 'all'].map((s) => el('option', { value: s }, s)));
  const scheme = el('select', { id: 'tunnels-scheme' });
  const refresh = el('button', { type: 'button' }, 'Refresh');
  const live = el('span', { class: 'muted', id: 'tunnels-live' });
  main.appendChild(el('div', { class: 'toolbar' },
    el('label', { for: 'tunnels-device' }, 'Device', device),
    el('label', { for: 'tunnels-status' }, 'Status', status),
    el('label', { for: 'tunnels-scheme' }, 'Scheme', scheme),
    refresh, live));
  const holder = el('div', { id: 'tunnels-table' });
  main.appendChild(holder);

  // Which project each device is in, to know where the caller may close tunnels.
  const projects = new Map();

  const draw = () => {
    const needle = state.device.trim().toLowerCase();
    const rows = state.tunnels.filter((t) => (!needle || String(t.client_id).toLowerCase().includes(needle))
      && (!state.scheme || (t.scheme || '') === state.scheme));
    const columns = tunnelColumns({
      withDevice: true,
      canClose: (t) => mayOpenTunnels(ctx.me, projects.get(t.client_id)),
      close: async (t) => {
        try {
          await ctx.api('DELETE', `/api/v1/clients/${encodeURIComponent(t.client_id)}/tunnels/${encodeURIComponent(t.id)}?force=true`);
          message(`Tunnel ${t.id} closed.`, 'ok');
        } catch (error) {
          message(`Closing failed: ${error.message}`, 'error');
        }
        await load();
      },
    });
    holder.replaceChildren(table(columns, rows, {
      label: 'Tunnels', empty: 'No tunnel matches.', rowAttrs: (t) => ({ 'data-tunnel': t.id }),
    }));
  };

  // Only the latest load draws: an older answer arriving late never replaces a newer one.
  let serial = 0;
  const load = async () => {
    const mine = ++serial;
    const statuses = { live: null, closed: 'closed', terminated: 'terminated', all: 'pending,opened,closed,terminated' };
    const wanted = statuses[state.status];
    const query = wanted ? `?filter[status]=${wanted}&page[limit]=500` : '';
    const [tunnels, devices] = await Promise.all([
      ctx.api('GET', `/api/v1/tunnels${query}`),
      ctx.api('GET', '/api/v1/clients?fields[clients]=id,project'),
    ]);
    if (mine !== serial) return;
    for (const d of devices.data || []) projects.set(d.id, d.project);
    state.tunnels = (tunnels.data || []).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const schemes = [...new Set(state.tunnels.map((t) => t.scheme).filter(Boolean))].sort();
    scheme.replaceChildren(el('option', { value: '' }, 'any'),
      ...schemes.map((s) => el('option', { value: s, selected: s === state.scheme }, s)));
    draw();
  };

  device.addEventListener('input', () => { state.device = device.value; draw(); });
  status.addEventListener('change', () => { state.status = status.value; load().catch((e) => message(e.message, 'error')); });
  scheme.addEventListener('change', () => { state.scheme = scheme.value; draw(); });
  refresh.addEventListener('click', () => load().catch((e) => message(e.message, 'error')));
  await load();
  // Tunnels opened, closed or changed anywhere (another tab, the API, the server itself
  // at an idle timeout) show without Refresh; agents' changes do not concern this page.
  const changed = coalesced(load);
  watchDevices(ctx, live, { reload: changed, changed: () => true, tunnel: changed });
}
