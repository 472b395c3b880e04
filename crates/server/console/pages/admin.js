// Administration (#/admin and #/admin/{section}): a sub-navigation and one module per
// section under pages/admin/. Sections the caller cannot use are not offered.
import { el } from '../lib.js';
import { rights } from './admin/common.js';

// [section, label, module, who sees it]
const SECTIONS = [
  ['users', 'Users and roles', './admin/users.js', (r) => r.isAdmin],
  ['projects', 'Projects', './admin/projects.js', () => true],
  ['credentials', 'Agent credentials', './admin/credentials.js', () => true],
  ['tokens', 'My API tokens', './admin/tokens.js', () => true],
  ['sessions', 'My sessions', './admin/sessions.js', () => true],
  ['cluster', 'Cluster nodes', './admin/cluster.js', (r) => r.isAdmin],
];

export async function render(main, ctx) {
  const who = rights(ctx.me);
  const offered = SECTIONS.filter(([, , , visible]) => visible(who));
  const wanted = ctx.params && ctx.params.section;
  const current = offered.find(([name]) => name === wanted) || offered[0];
  const [name, label, module] = current;

  main.appendChild(el('h1', {}, 'Administration'));
  main.appendChild(el('nav', { class: 'subnav', 'aria-label': 'Administration sections' },
    el('ul', {}, offered.map(([section, text]) => el('li', {},
      el('a', { href: `#/admin/${section}`, 'aria-current': section === name ? 'page' : null }, text))))));
  if (wanted && wanted !== name) {
    main.appendChild(el('p', { class: 'hint' }, `“${wanted}” is not a section you can open; showing ${label}.`));
  }
  const body = el('section', { class: 'admin-section', 'aria-labelledby': 'admin-section-title' },
    el('h2', { id: 'admin-section-title' }, label));
  main.appendChild(body);
  const page = await import(module);
  await page.render(body, { ...ctx, rights: who });
  document.title = `${label} · rportd console`;
}
