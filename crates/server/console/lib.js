// Small helpers every page shares: the API call, a DOM builder that never parses
// markup from data, tables, formatting and messages.

export class ApiError extends Error {
  constructor(status, detail, body, retryAfter) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

// Calls the public API with the session cookie. Resolves to the parsed JSON body (or
// null for an empty one); rejects with an ApiError carrying the status and errors[0].detail.
export async function api(method, path, body, headers = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch (_) { parsed = null; }
  }
  if (!response.ok) {
    const first = parsed && Array.isArray(parsed.errors) ? parsed.errors[0] : null;
    const detail = first ? (first.detail || first.title) : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, detail, parsed, response.headers.get('Retry-After'));
  }
  return parsed;
}

// el('a', {href: '#/x', class: 'btn', onclick: fn}, 'text', childNode): text children
// become text nodes, so data is never parsed as markup.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      node.className = value;
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, String(value));
    }
  }
  appendChildren(node, children);
  return node;
}

function appendChildren(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) {
      appendChildren(node, child);
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      const text = document.createTextNode('');
      text.textContent = String(child);
      node.appendChild(text);
    }
  }
}

// columns: [{key, label, render?(row) -> Node|string, sort?: 'ascending'|'descending'|'none', onSort?()}]
// Returns a horizontally scrollable wrapper around the table.
export function table(columns, rows, options = {}) {
  const head = el('tr', {}, columns.map((column) => {
    if (!column.onSort) return el('th', { scope: 'col' }, column.label);
    return el('th', { scope: 'col', 'aria-sort': column.sort || 'none' },
      el('button', { type: 'button', class: 'sort', onclick: column.onSort }, column.label,
        el('span', { 'aria-hidden': 'true' },
          column.sort === 'ascending' ? ' ▲' : column.sort === 'descending' ? ' ▼' : '')));
  }));
  const body = el('tbody', {}, rows.map((row) => {
    const tr = el('tr', options.rowAttrs ? options.rowAttrs(row) : {},
      columns.map((column) => el('td', { 'data-label': column.label },
        column.render ? column.render(row) : display(row[column.key]))));
    return tr;
  }));
  const tableNode = el('table', {}, el('thead', {}, head), body);
  if (!rows.length) {
    body.appendChild(el('tr', {}, el('td', { colspan: columns.length, class: 'empty' },
      options.empty || 'Nothing to show.')));
  }
  return el('div', { class: 'table-wrap', role: 'region', tabindex: '0',
    'aria-label': options.label || 'table' }, tableNode);
}

function display(value) {
  if (value === undefined || value === null || value === '') return '—';
  if (Array.isArray(value)) return value.join(', ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function formatTime(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime()) || date.getFullYear() < 1971) return '—';
  return date.toLocaleString();
}

export function formatBytes(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

// A message in the aria-live region; kind: 'info' | 'ok' | 'error'.
export function message(text, kind = 'info') {
  const region = document.getElementById('messages');
  if (!region) return;
  const item = el('div', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : null }, text,
    el('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss',
      onclick: () => item.remove() }, '×'));
  region.appendChild(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 6000);
}
export const toast = message;

export function copyButton(text, label = 'Copy') {
  const button = el('button', { type: 'button', class: 'copy', onclick: async () => {
    button.textContent = (await copyText(text)) ? 'Copied' : 'Select and copy';
    setTimeout(() => { button.textContent = label; }, 2000);
  } }, label);
  return button;
}

// The Clipboard API exists only in secure contexts (HTTPS, localhost); a console reached over
// plain HTTP elsewhere falls back to copying a selected, off-screen textarea.
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    const area = el('textarea', { readonly: '', class: 'offscreen', 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      return document.execCommand('copy');
    } catch (_) {
      return false;
    } finally {
      area.remove();
    }
  }
}

// A titled section with a heading.
export function section(title, ...children) {
  return el('section', { class: 'card' }, el('h2', {}, title), ...children);
}

// Wraps `load` (async) so that calls within `ms` of each other become one: a burst of
// tunnel events reloads a table once. A failure is shown as a message.
export function coalesced(load, ms = 250) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => load().catch((error) => message(error.message, 'error')), ms);
  };
}
