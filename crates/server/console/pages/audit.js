// Placeholder for the audit page; the real page replaces this module.
import { el } from '../lib.js';

export async function render(main, ctx) {
  main.appendChild(el('h1', {}, 'audit'));
  main.appendChild(el('p', {}, 'Not written yet.'));
}
