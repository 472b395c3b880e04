// Devices: every agent the caller may see, searchable, filterable and sortable, kept
// current by the server's event stream (GET /api/v1/events).
import { el, table, formatTime, message } from '../lib.js';

const COLUMNS = [
  ['status', 'Status'], ['name', 'Name'], ['id', 'ID'], ['tags', 'Tags and labels'],
  ['os', 'OS'], ['address', 'Address'], ['last_seen', 'Last seen'],
];

export function statusBadge(connected) {
  const word = connected ? 'connected' : 'disconnected';
  return el('span', { class: `status ${word}` }, word);
}

function sortValue(device, key) {
  switch (key) {
    case 'status': return device.connection_state === 'connected' ? 0 : 1;
    case 'os': return (device.os_full_name || device.os || '').toLowerCase();
    case 'tags': return (device.tags || []).join(',').toLowerCase();
    case 'last_seen': return device.last_heartbeat_at || device.disconnected_at || '';
    default: return String(device[key] || '').toLowerCase();
  }
}

export function tagsAndLabels(device) {
  const labels = Object.entries(device.labels || {}).map(([k, v]) => `${k}=${v}`);
  const items = [...(device.tags || []), ...labels];
  if (!items.length) return '—';
  return el('span', {}, items.map((item) => el('span', { class: 'tag' }, item)));
}

export async function render(main, ctx) {
  const state = { devices: [], groups: [], search: '', tag: '', group: '', status: '', sort: 'name', dir: 1 };
  main.appendChild(el('h1', {}, 'Devices'));

  const search = el('input', { type: 'search', id: 'device-search', placeholder: 'name, id, address…' });
  const tagSelect = el('select', { id: 'device-tag' });
  const groupSelect = el('select', { id: 'device-group' });
  const statusSelect = el('select', { id: 'device-status' },
    el('option', { value: '' }, 'any'), el('option', { value: 'connected' }, 'connected'),
    el('option', { value: 'disconnected' }, 'disconnected'));
  const live = el('span', { class: 'muted', id: 'live-state', 'aria-live': 'polite' }, 'live updates: connecting…');
  main.appendChild(el('div', { class: 'toolbar' },
    el('label', { for: 'device-search' }, 'Search', search),
    el('label', { for: 'device-tag' }, 'Tag', tagSelect),
    el('label', { for: 'device-group' }, 'Group', groupSelect),
    el('label', { for: 'device-status' }, 'Status', statusSelect),
    live));
  const holder = el('div', { id: 'devices-table' });
  const count = el('p', { class: 'muted', id: 'devices-count' });
  main.append(holder, count);

  const fillSelect = (select, values, current) => {
    select.replaceChildren(el('option', { value: '' }, 'any'),
      ...values.map(([value, label]) => el('option', { value, selected: value === current }, label)));
  };

  const visible = () => {
    const needle = state.search.trim().toLowerCase();
    const group = state.groups.find((g) => g.id === state.group);
    return state.devices.filter((d) => {
      if (state.status && d.connection_state !== state.status) return false;
      if (state.tag && !(d.tags || []).includes(state.tag)) return false;
      if (group && !(group.client_ids || []).includes(d.id) && !(d.groups || []).includes(group.id)) return false;
      if (!needle) return true;
      return [d.name, d.id, d.address, d.hostname, d.os_full_name, ...(d.tags || [])]
        .some((v) => String(v || '').toLowerCase().includes(needle));
    }).sort((a, b) => {
      const x = sortValue(a, state.sort);
      const y = sortValue(b, state.sort);
      return (x < y ? -1 : x > y ? 1 : 0) * state.dir;
    });
  };

  const draw = () => {
    const rows = visible();
    const columns = COLUMNS.map(([key, label]) => ({
      key, label,
      sort: state.sort === key ? (state.dir > 0 ? 'ascending' : 'descending') : 'none',
      onSort: () => {
        if (state.sort === key) state.dir = -state.dir; else { state.sort = key; state.dir = 1; }
        draw();
      },
      render: {
        status: (d) => statusBadge(d.connection_state === 'connected'),
        name: (d) => el('a', { href: `#/devices/${encodeURIComponent(d.id)}` }, d.name || d.id),
        id: (d) => el('code', {}, d.id),
        tags: tagsAndLabels,
        os: (d) => d.os_full_name || d.os || '—',
        address: (d) => d.address || '—',
        last_seen: (d) => d.connection_state === 'connected' ? 'now' : formatTime(d.last_heartbeat_at || d.disconnected_at),
      }[key],
    }));
    holder.replaceChildren(table(columns, rows, {
      label: 'Devices', empty: state.devices.length ? 'No device matches.' : 'No devices yet.',
      rowAttrs: (d) => ({ 'data-id': d.id, 'data-status': d.connection_state }),
    }));
    count.textContent = `${rows.length} of ${state.devices.length} devices`;
  };

  const load = async () => {
    const [devices, groups] = await Promise.all([
      ctx.api('GET', '/api/v1/clients'),
      ctx.api('GET', '/api/v1/client-groups').catch(() => ({ data: [] })),
    ]);
    state.devices = devices.data || [];
    state.groups = groups.data || [];
    const tags = [...new Set(state.devices.flatMap((d) => d.tags || []))].sort();
    fillSelect(tagSelect, tags.map((t) => [t, t]), state.tag);
    fillSelect(groupSelect, state.groups.map((g) => [g.id, g.description ? `${g.id} (${g.description})` : g.id]), state.group);
    draw();
  };

  search.addEventListener('input', () => { state.search = search.value; draw(); });
  tagSelect.addEventListener('change', () => { state.tag = tagSelect.value; draw(); });
  groupSelect.addEventListener('change', () => { state.group = groupSelect.value; draw(); });
  statusSelect.addEventListener('change', () => { state.status = statusSelect.value; draw(); });

  await load();
  watchDevices(ctx, live, {
    reload: () => load().catch((error) => message(error.message, 'error')),
    changed: (event) => {
      const device = state.devices.find((d) => d.id === event.id);
      if (!device || event.deleted) return false;
      device.connection_state = event.connected ? 'connected' : 'disconnected';
      for (const key of ['name', 'address', 'connected_at', 'disconnected_at', 'last_heartbeat_at']) {
        if (event[key] !== undefined && event[key] !== null) device[key] = event[key];
      }
      draw();
      return true;
    },
  });
}

// Listens to /api/v1/events: `changed(event)` returns false when it needs a full reload;
// `tunnel(event)`, when given, hears each tunnel that opened, waits, closed or changed.
export function watchDevices(ctx, indicator, { reload, changed, tunnel }) {
  let source = null;
  let retry = null;
  let closed = false;
  const open = () => {
    source = new EventSource('/api/v1/events');
    source.addEventListener('ready', () => {
      indicator.textContent = 'live updates: on';
      reload();
    });
    source.addEventListener('client', (event) => {
      let data = null;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (!changed(data)) reload();
    });
    if (tunnel) {
      source.addEventListener('tunnel', (event) => {
        let data = null;
        try { data = JSON.parse(event.data); } catch (_) { return; }
        tunnel(data);
      });
    }
    source.addEventListener('resync', () => reload());
    source.onerror = () => {
      indicator.textContent = 'live updates: reconnecting…';
      // EventSource retries by itself unless the server refused (then readyState is CLOSED).
      if (source.readyState === EventSource.CLOSED && !closed) {
        retry = setTimeout(open, 5000);
      }
    };
  };
  open();
  ctx.onCleanup(() => {
    closed = true;
    clearTimeout(retry);
    if (source) source.close();
  });
}
