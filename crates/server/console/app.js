// The console's shell: a hash router loading one page module per route, the nav,
// the session check and logout. Pages export `render(main, ctx)`.
import { api, el, message, ApiError } from './lib.js';

// route name -> page module
const ROUTES = {
  login: './pages/login.js',
  devices: './pages/devices.js',
  device: './pages/device.js',
  tunnels: './pages/tunnels.js',
  audit: './pages/audit.js',
  admin: './pages/admin.js',
};

const NAV = [
  ['#/devices', 'Devices', 'devices'],
  ['#/tunnels', 'Tunnels', 'tunnels'],
  ['#/audit', 'Audit', 'audit'],
  ['#/admin', 'Administration', 'admin'],
];

// '#/devices/abc' -> {name: 'device', params: {id: 'abc'}}
export function parseRoute(hash) {
  const parts = (hash || '').replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (first === 'devices' && second) return { name: 'device', params: { id: second } };
  if (first === 'admin' && second) return { name: 'admin', params: { section: second } };
  if (first && ROUTES[first]) return { name: first, params: {} };
  return { name: 'devices', params: {} };
}

let cleanups = [];
let me = null;
let renderCount = 0;

function runCleanups() {
  const pending = cleanups;
  cleanups = [];
  for (const fn of pending) {
    try { fn(); } catch (error) { console.error(error); }
  }
}

function navigate(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

async function loadMe() {
  try {
    const body = await api('GET', '/api/v1/me');
    me = body ? body.data : null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) me = null; else throw error;
  }
  return me;
}

function drawNav(current) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  nav.replaceChildren();
  who.replaceChildren();
  if (!me) return;
  nav.appendChild(el('ul', {}, NAV.map(([href, label, name]) => el('li', {},
    el('a', { href, 'aria-current': name === current ? 'page' : null }, label)))));
  who.appendChild(el('span', {}, me.username || ''));
  who.appendChild(el('button', { type: 'button', class: 'link', onclick: logout }, 'Log out'));
}

async function logout() {
  try { await api('DELETE', '/api/v1/logout'); } catch (_) { /* the session may be gone already */ }
  me = null;
  runCleanups();
  navigate('#/login');
}

async function route() {
  runCleanups();
  const serial = ++renderCount;
  const main = document.getElementById('main');
  let { name, params } = parseRoute(location.hash);
  if (!me && name !== 'login') {
    try { await loadMe(); } catch (error) { message(error.message, 'error'); }
    if (!me) { name = 'login'; params = {}; if (location.hash !== '#/login') history.replaceState(null, '', '#/login'); }
  }
  if (serial !== renderCount) return;
  drawNav(name === 'device' ? 'devices' : name);
  main.replaceChildren(el('p', { class: 'loading' }, 'Loading…'));
  const ctx = {
    api, me, params, navigate,
    onCleanup: (fn) => cleanups.push(fn),
    // Login calls this after a successful login so the nav reflects the session.
    refreshMe: async () => { await loadMe(); ctx.me = me; drawNav(name); return me; },
  };
  try {
    const page = await import(ROUTES[name]);
    if (serial !== renderCount) return;
    main.replaceChildren();
    await page.render(main, ctx);
    document.title = `${name} · rportd console`;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      me = null;
      navigate('#/login');
      return;
    }
    main.replaceChildren(el('p', { class: 'error' }, `Could not show this page: ${error.message}`));
  }
}

window.addEventListener('hashchange', route);
route();
