// Placeholder for the admin page; the real page replaces this module.
import { el } from '../lib.js';

export async function render(main, ctx) {
  main.appendChild(el('h1', {}, 'admin'));
  main.appendChild(el('p', {}, 'Not written yet.'));
}
