// Cluster nodes (server admins): every rportd node sharing this database, from
// GET /api/v1/status: whether its lease runs, whether this node reaches it, what it holds.
import { el, table, formatTime, message } from '../../lib.js';

// up / down, and "this node".
function stateOf(node) {
  if (node.this_node) return ['this node', 'ok'];
  if (!node.alive) return ['down', 'error'];
  if (node.reachable === false) return ['up, unreachable', 'warn'];
  return ['up', 'ok'];
}

export async function render(section, ctx) {
  const { api, onCleanup } = ctx;
  const listNode = el('div');
  const summary = el('p', { class: 'summary' });

  async function load() {
    const body = await api('GET', '/api/v1/status');
    const status = (body && body.data) || {};
    const cluster = status.cluster || {};
    const nodes = cluster.nodes || [];
    const alive = nodes.filter((n) => n.alive).length;
    summary.textContent = `${nodes.length} node(s), ${alive} up. This node: ${cluster.node_id || '—'}.`;
    listNode.replaceChildren(table([
      { key: 'id', label: 'Node' },
      { key: 'state', label: 'State', render: (n) => {
        const [text, kind] = stateOf(n);
        return el('span', { class: `badge ${kind}` }, text);
      } },
      { key: 'api_address', label: 'API address' },
      { key: 'peer_address', label: 'Peer address' },
      { key: 'public_host', label: 'Tunnel host' },
      { key: 'clients_connected', label: 'Agents held' },
      { key: 'last_seen', label: 'Last seen', render: (n) => formatTime(n.last_seen) },
      { key: 'started_at', label: 'Started', render: (n) => formatTime(n.started_at) },
      { key: 'last_error', label: 'Last error' },
    ], nodes, {
      label: 'Cluster nodes', empty: 'Only server administrators see the nodes.',
      rowAttrs: (n) => ({ 'data-node': n.id, class: n.this_node ? 'current' : null }),
    }));
  }

  await load();
  section.appendChild(el('p', { class: 'hint' },
    'Nodes sharing one PostgreSQL database; a single rportd on SQLite is a cluster of one. A node is up while it renews its lease (every 2 s). Refreshed every 5 s.'));
  section.appendChild(summary);
  section.appendChild(listNode);
  const timer = setInterval(() => {
    load().catch((error) => {
      // One message, not one every 5 s: the page stops refreshing until it is opened again.
      clearInterval(timer);
      message(`Cluster nodes: ${error.message}`, 'error');
    });
  }, 5000);
  onCleanup(() => clearInterval(timer));
}
