// One device: its facts, its tags and labels (editable), its live and past tunnels,
// and the form that opens a tunnel to it.
import { el, table, formatTime, formatBytes, message, copyButton, section, coalesced } from '../lib.js';
import { statusBadge, watchDevices } from './devices.js';

// Well-known schemes and their ports on the device.
export const SCHEMES = { ssh: 22, rdp: 3389, http: 80, https: 443, vnc: 5900 };

// Whether the caller may open and close tunnels of `project` (GET /api/v1/me: `admin`,
// `roles` by project, `scope` of an API token).
export function mayOpenTunnels(me, project) {
  if (!me || me.scope === 'read') return false;
  if (me.admin) return true;
  const role = (me.roles || {})[project];
  return role === 'tunnels' || role === 'admin';
}

// The host a tunnel is reached at: its own address, or this console's host when it
// listens on every address.
function tunnelHost(tunnel) {
  return tunnel.lhost && !['0.0.0.0', '::', ''].includes(tunnel.lhost) ? tunnel.lhost : location.hostname;
}

// What to type to use `tunnel`, for its scheme.
export function tunnelCommand(tunnel) {
  const host = tunnelHost(tunnel);
  const port = tunnel.lport;
  if (tunnel.tunnel_url) return tunnel.tunnel_url;
  switch (tunnel.scheme) {
    case 'ssh': return `ssh -p ${port} USER@${host}`;
    case 'http': return `http://${host}:${port}/`;
    case 'https': return `https://${host}:${port}/`;
    case 'vnc': return `vncviewer ${host}::${port}`;
    case 'rdp': return `mstsc /v:${host}:${port}`;
    default: return `${host}:${port}`;
  }
}

function rdpFile(tunnel) {
  const host = tunnelHost(tunnel);
  const text = `full address:s:${host}:${tunnel.lport}\r\nprompt for credentials:i:1\r\n`;
  const url = URL.createObjectURL(new Blob([text], { type: 'application/x-rdp' }));
  return el('a', { href: url, download: `${tunnel.client_id || 'device'}-${tunnel.id}.rdp`, class: 'button' }, 'Download .rdp file');
}

// `close(tunnel)` adds a Close button to live tunnels `canClose(tunnel)` allows.
export function tunnelColumns({ withDevice, canClose, close } = {}) {
  const columns = [
    { key: 'id', label: 'Tunnel', render: (t) => el('code', {}, t.id) },
  ];
  if (withDevice) {
    columns.push({ key: 'client_id', label: 'Device',
      render: (t) => el('a', { href: `#/devices/${encodeURIComponent(t.client_id)}` }, t.client_id) });
  }
  columns.push(
    { key: 'status', label: 'Status', render: (t) => el('span', { class: `status ${t.status}` }, t.status || '—') },
    { key: 'scheme', label: 'Scheme', render: (t) => t.scheme || t.protocol || '—' },
    { key: 'ports', label: 'Server port → target', render: (t) => `${t.lport} → ${t.rhost}:${t.rport}` },
    { key: 'acl', label: 'ACL', render: (t) => t.acl || 'anyone' },
    { key: 'created_at', label: 'Opened', render: (t) => `${formatTime(t.created_at)} by ${t.created_by || '—'}` },
    { key: 'closed', label: 'Closed', render: (t) => t.closed_at ? `${formatTime(t.closed_at)} (${t.close_reason || '—'})` : '—' },
    { key: 'bytes', label: 'Bytes in / out', render: (t) => `${formatBytes(t.bytes_in)} / ${formatBytes(t.bytes_out)}` },
    { key: 'connections', label: 'Connections', render: (t) => `${t.connections || 0} (${t.active_connections || 0} active)` },
  );
  if (close) {
    columns.push({ key: 'actions', label: 'Actions', render: (t) => (isLive(t) && canClose(t)
      ? el('button', { type: 'button', class: 'danger', 'data-close': t.id, onclick: () => close(t) }, 'Close')
      : '—') });
  }
  return columns;
}

export function isLive(tunnel) {
  return tunnel.status !== 'closed' && tunnel.status !== 'terminated';
}

export async function render(main, ctx) {
  const id = ctx.params.id;
  const path = `/api/v1/clients/${encodeURIComponent(id)}`;
  const header = el('h1', {}, 'Device');
  main.append(el('p', {}, el('a', { href: '#/devices' }, '← All devices')), header);
  const factsBox = el('div');
  const attributesBox = el('div');
  const openBox = el('div');
  const tunnelsBox = el('div', { id: 'device-tunnels' });
  // The tables are drawn again when a tunnel of the device opens, closes or changes (the
  // event stream says so); counters change with every connection and are fetched on
  // demand rather than polled, so that a table being read is not redrawn all the time.
  const refresh = el('button', { type: 'button', id: 'device-tunnels-refresh' }, 'Refresh tunnels');
  const live = el('span', { class: 'muted', id: 'device-live' });
  main.append(el('div', { class: 'grid' }, factsBox, attributesBox), openBox,
    el('div', { class: 'toolbar' }, refresh, live), tunnelsBox);

  let device = null;
  const loadDevice = async () => {
    device = (await ctx.api('GET', path)).data;
    header.replaceChildren(device.name || device.id, ' ', statusBadge(device.connection_state === 'connected'));
    const facts = [
      ['ID', device.id], ['Project', device.project], ['Host name', device.hostname],
      ['OS', device.os_full_name || device.os], ['Kernel', device.os_kernel], ['Architecture', device.os_arch],
      ['CPU', device.cpu_model_name ? `${device.cpu_model_name} × ${device.num_cpus || '?'}` : null],
      ['Memory', device.mem_total ? formatBytes(device.mem_total) : null],
      ['IPv4', (device.ipv4 || []).join(', ')], ['IPv6', (device.ipv6 || []).join(', ')],
      ['Connected from', device.address], ['Agent version', device.version],
      ['Connected at', formatTime(device.connected_at)], ['Disconnected at', formatTime(device.disconnected_at)],
      ['Last seen', formatTime(device.last_heartbeat_at)], ['Groups', (device.groups || []).join(', ')],
    ];
    factsBox.replaceChildren(section('Facts', el('dl', { class: 'facts' },
      facts.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v === undefined || v === null || v === '' ? '—' : String(v))]))));
  };

  const drawAttributes = () => {
    const tags = el('input', { id: 'attr-tags', value: (device.tags || []).join(', ') });
    const labels = el('textarea', { id: 'attr-labels', rows: 4 });
    labels.value = Object.entries(device.labels || {}).map(([k, v]) => `${k}=${v}`).join('\n');
    const save = el('button', { type: 'submit', class: 'primary' }, 'Save');
    const form = el('form', { id: 'attributes-form' },
      el('div', { class: 'row' }, el('label', { for: 'attr-tags' }, 'Tags (comma separated)', tags)),
      el('div', { class: 'row' }, el('label', { for: 'attr-labels' }, 'Labels (key=value, one a line)', labels)),
      save);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = {
        tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean),
        labels: Object.fromEntries(labels.value.split('\n').map((line) => line.trim()).filter(Boolean)
          .map((line) => { const at = line.indexOf('='); return at < 0 ? [line, ''] : [line.slice(0, at).trim(), line.slice(at + 1).trim()]; })),
      };
      save.disabled = true;
      try {
        await ctx.api('PUT', `${path}/attributes`, body);
        message('Tags and labels saved.', 'ok');
        await loadDevice();
      } catch (error) {
        message(`Saving failed: ${error.message}`, 'error');
      } finally {
        save.disabled = false;
      }
    });
    const canEdit = ctx.me && ctx.me.scope !== 'read' && (ctx.me.admin || (ctx.me.roles || {})[device.project] === 'admin');
    if (!canEdit) {
      for (const input of [tags, labels, save]) input.disabled = true;
    }
    attributesBox.replaceChildren(section('Tags and labels', form));
  };

  const closeTunnel = async (tunnel, force) => {
    try {
      await ctx.api('DELETE', `${path}/tunnels/${encodeURIComponent(tunnel.id)}${force ? '?force=true' : ''}`);
      message(`Tunnel ${tunnel.id} closed.`, 'ok');
    } catch (error) {
      message(`Closing failed: ${error.message}`, 'error');
    }
    await loadTunnels();
  };

  // Only the latest load draws: an older answer arriving late never replaces a newer one.
  let tunnelsSerial = 0;
  const loadTunnels = async () => {
    const mine = ++tunnelsSerial;
    const q = `filter[client_id]=${encodeURIComponent(id)}`;
    const [live, past] = await Promise.all([
      ctx.api('GET', `/api/v1/tunnels?${q}`),
      ctx.api('GET', `/api/v1/tunnels?${q}&filter[status]=closed,terminated&page[limit]=50`),
    ]);
    if (mine !== tunnelsSerial) return;
    const allowed = mayOpenTunnels(ctx.me, device.project);
    const columns = tunnelColumns({ canClose: () => allowed, close: (tunnel) => closeTunnel(tunnel, true) });
    tunnelsBox.replaceChildren(
      section('Live tunnels', table(columns, live.data || [],
        { label: 'Live tunnels', empty: 'No tunnel open.', rowAttrs: (t) => ({ 'data-tunnel': t.id }) })),
      section('Past tunnels', table(tunnelColumns(), past.data || [],
        { label: 'Past tunnels', empty: 'None yet.', rowAttrs: (t) => ({ 'data-tunnel': t.id }) })));
  };

  const drawOpenForm = async () => {
    if (!mayOpenTunnels(ctx.me, device.project)) {
      openBox.replaceChildren();
      return;
    }
    let myIp = '';
    try { myIp = (await ctx.api('GET', '/api/v1/me/ip')).data.ip; } catch (_) { myIp = ''; }
    const scheme = el('select', { id: 'tunnel-scheme' },
      el('option', { value: '' }, 'other (give the port)'),
      Object.entries(SCHEMES).map(([name, port]) => el('option', { value: name }, `${name} (${port})`)));
    const remote = el('input', { id: 'tunnel-remote', placeholder: 'PORT or HOST:PORT', required: true });
    const protocol = el('select', { id: 'tunnel-protocol' },
      ['tcp', 'udp', 'tcp+udp'].map((name) => el('option', { value: name }, name)));
    const local = el('input', { id: 'tunnel-local', placeholder: 'random', inputmode: 'numeric' });
    const acl = el('input', { id: 'tunnel-acl', value: myIp, placeholder: 'empty: anyone' });
    const idle = el('input', { id: 'tunnel-idle', type: 'number', min: 0, max: 10080, value: 5 });
    const autoClose = el('input', { id: 'tunnel-auto-close', placeholder: 'e.g. 30m, 2h' });
    const proxy = el('input', { id: 'tunnel-http-proxy', type: 'checkbox' });
    const hostHeader = el('input', { id: 'tunnel-host-header', placeholder: 'optional' });
    const authUser = el('input', { id: 'tunnel-auth-user', placeholder: 'optional', autocomplete: 'off' });
    const authPassword = el('input', { id: 'tunnel-auth-password', type: 'password', autocomplete: 'new-password' });
    const proxyOptions = [hostHeader, authUser, authPassword];
    const submit = el('button', { type: 'submit', class: 'primary', id: 'tunnel-open' }, 'Open tunnel');
    const result = el('div', { id: 'tunnel-result', 'aria-live': 'polite' });
    // The proxy's options mean something only with the proxy.
    const proxyChanged = () => {
      for (const input of proxyOptions) input.disabled = !proxy.checked;
    };
    scheme.addEventListener('change', () => {
      if (scheme.value) remote.value = String(SCHEMES[scheme.value]);
      proxy.disabled = !['http', 'https'].includes(scheme.value);
      if (proxy.disabled) proxy.checked = false;
      proxyChanged();
    });
    proxy.addEventListener('change', proxyChanged);
    proxy.disabled = true;
    proxyChanged();
    const form = el('form', { id: 'tunnel-form' },
      el('div', { class: 'row' },
        el('label', { for: 'tunnel-scheme' }, 'Scheme', scheme),
        el('label', { for: 'tunnel-remote' }, 'Port on the device', remote),
        el('label', { for: 'tunnel-protocol' }, 'Protocol', protocol),
        el('label', { for: 'tunnel-local' }, 'Server port', local),
        el('label', { for: 'tunnel-acl' }, 'Allowed addresses (ACL)', acl)),
      el('div', { class: 'row' },
        el('label', { for: 'tunnel-idle' }, 'Idle timeout (minutes, 0 = never)', idle),
        el('label', { for: 'tunnel-auto-close' }, 'Close after', autoClose),
        el('label', { class: 'check', for: 'tunnel-http-proxy' }, proxy, 'through the HTTPS proxy'),
        el('label', { for: 'tunnel-host-header' }, 'Host header', hostHeader),
        el('label', { for: 'tunnel-auth-user' }, 'Proxy user (basic auth)', authUser),
        el('label', { for: 'tunnel-auth-password' }, 'Proxy password', authPassword)),
      submit, result);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const query = new URLSearchParams({ remote: remote.value.trim() });
      if (scheme.value) query.set('scheme', scheme.value);
      if (protocol.value !== 'tcp') query.set('protocol', protocol.value);
      if (local.value.trim()) query.set('local', local.value.trim());
      if (acl.value.trim()) query.set('acl', acl.value.trim());
      if (idle.value !== '') query.set('idle-timeout-minutes', idle.value);
      if (autoClose.value.trim()) query.set('auto-close', autoClose.value.trim());
      if (proxy.checked) {
        query.set('http_proxy', 'true');
        if (hostHeader.value.trim()) query.set('host_header', hostHeader.value.trim());
        if (authUser.value.trim()) {
          query.set('auth_user', authUser.value.trim());
          query.set('auth_password', authPassword.value);
        }
      }
      submit.disabled = true;
      try {
        const tunnel = (await ctx.api('PUT', `${path}/tunnels?${query}`)).data;
        authPassword.value = '';
        showResult(result, tunnel, () => closeTunnel(tunnel, true));
        await loadTunnels();
      } catch (error) {
        result.replaceChildren(el('p', { class: 'error', role: 'alert' }, `Could not open the tunnel: ${error.message}`));
      } finally {
        submit.disabled = false;
      }
    });
    openBox.replaceChildren(section('Open tunnel', form));
  };

  await loadDevice();
  drawAttributes();
  await drawOpenForm();
  await loadTunnels();
  refresh.addEventListener('click', () => loadTunnels().catch((error) => message(error.message, 'error')));

  const tunnelsChanged = coalesced(loadTunnels);
  watchDevices(ctx, live, {
    reload: tunnelsChanged,
    changed: (event) => {
      if (event.id === id) {
        loadDevice().then(loadTunnels).catch((error) => message(error.message, 'error'));
      }
      return true;
    },
    tunnel: (event) => {
      if (event.client_id === id) tunnelsChanged();
    },
  });
}

function showResult(result, tunnel, close) {
  const command = tunnelCommand(tunnel);
  result.replaceChildren(el('div', { class: 'card' },
    el('p', {}, `Tunnel ${tunnel.id} is open on server port ${tunnel.lport}.`),
    el('pre', { class: 'command', id: 'tunnel-command' }, command),
    el('div', { class: 'toolbar' },
      copyButton(command, 'Copy command'),
      tunnel.scheme === 'rdp' ? rdpFile(tunnel) : null,
      el('button', { type: 'button', class: 'danger', id: 'tunnel-close', onclick: close }, 'Close tunnel'))));
}
