// What the administration sections share: labelled fields, a confirmation dialog, the
// box that shows a secret once, and what the caller may do (from GET /api/v1/me).
import { el, copyButton } from '../../lib.js';

let idCounter = 0;

// A labelled control; returns [wrapper, control]. attrs.tag picks the element (input by
// default); attrs.hint adds a described-by note.
export function field(label, attrs = {}) {
  idCounter += 1;
  const id = `admin-${attrs.name || 'field'}-${idCounter}`;
  const { tag = 'input', hint, options, ...rest } = attrs;
  const control = el(tag, { ...rest, id, 'aria-describedby': hint ? `${id}-hint` : null });
  for (const [value, text, selected] of options || []) {
    control.appendChild(el('option', { value, selected: Boolean(selected) }, text));
  }
  const isCheck = rest.type === 'checkbox';
  const labelNode = el('label', { for: id }, label);
  return [el('div', { class: isCheck ? 'field check' : 'field' },
    isCheck ? [control, labelNode] : [labelNode, control],
    hint ? el('small', { id: `${id}-hint`, class: 'hint' }, hint) : null), control];
}

// Asks before something that cannot be undone; resolves to true when confirmed. A modal
// <dialog> keeps the focus inside it and closes with Escape (= cancel).
export function confirmAction(text, confirmLabel = 'Delete') {
  return new Promise((resolve) => {
    const cancel = el('button', { type: 'button', value: 'cancel', class: 'cancel' }, 'Cancel');
    const confirm = el('button', { type: 'button', value: 'confirm', class: 'danger' }, confirmLabel);
    const dialog = el('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-text', role: 'alertdialog' },
      el('p', { id: 'confirm-text' }, text),
      el('div', { class: 'actions' }, cancel, confirm));
    let answered = false;
    const finish = (answer) => {
      if (answered) return;
      answered = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener('click', () => finish(false));
    confirm.addEventListener('click', () => finish(true));
    dialog.addEventListener('close', () => finish(false));
    document.body.appendChild(dialog);
    if (typeof dialog.showModal === 'function') {
      dialog.showModal();
      cancel.focus();
    } else {
      finish(window.confirm(text));
    }
  });
}

// A secret the API returns once (an agent's password, an API token): shown with a copy
// button and a plain warning, until the user dismisses it.
export function shownOnce(title, secret, onDone) {
  const code = el('code', { class: 'secret', tabindex: '0' }, secret);
  const box = el('div', { class: 'shown-once', role: 'region', 'aria-label': title, tabindex: '-1' },
    el('h3', {}, title),
    el('p', { class: 'warning' }, 'Copy it now: it won\'t be shown again. rportd keeps only a hash of it.'),
    el('div', { class: 'secret-row' }, code, copyButton(secret)),
    el('button', { type: 'button', onclick: () => { box.remove(); if (onDone) onDone(); } }, 'I have copied it'));
  return box;
}

// What the caller may do, as GET /api/v1/me says; the API enforces it either way.
export function rights(me) {
  const roles = (me && me.roles) || {};
  const isAdmin = Boolean(me && me.admin);
  const readOnly = Boolean(me && me.scope === 'read');
  return {
    isAdmin,
    readOnly,
    apiToken: Boolean(me && me.api_token),
    roleIn: (project) => (isAdmin ? 'admin' : roles[project] || null),
    adminOf: (project) => !readOnly && (isAdmin || roles[project] === 'admin'),
    adminProjects: () => Object.entries(roles).filter(([, role]) => role === 'admin').map(([p]) => p),
    writes: !readOnly,
  };
}

// A button that disables itself while `action` runs, so a double click sends one request.
export function busyButton(label, attrs, action) {
  const button = el('button', { type: 'button', ...attrs }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try { await action(); } finally { button.disabled = false; }
  });
  return button;
}

// Resolves to the API's data for GET `path`, or [] when it answers 403 (the caller may not
// read it): sections show what they can.
export async function dataOr(api, path, fallback) {
  try {
    const body = await api('GET', path);
    return body ? body.data : fallback;
  } catch (error) {
    if (error.status === 403) return fallback;
    throw error;
  }
}
