// Login: user name and password, then the authenticator code when the server asks
// for it. The session ends up in an HttpOnly cookie (POST /api/v1/login?cookie=true).
import { el } from '../lib.js';

function explain(error) {
  if (error.status === 429) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} seconds.` : ' Try again later.';
    return `Too many failed logins from this address.${wait}`;
  }
  if (error.status === 401) {
    const code = error.body && error.body.errors && error.body.errors[0] && error.body.errors[0].code;
    if (code === 'ERR_CODE_PASSWORD_EXPIRED') return 'Your password has expired: ask an administrator to set a new one, or set one with rportcli.';
    return 'Wrong user name, password or code.';
  }
  return `Login failed: ${error.message}`;
}

export async function render(main, ctx) {
  const status = el('p', { class: 'error', role: 'alert', id: 'login-error' });
  const card = el('section', { class: 'card login' }, el('h1', {}, 'Log in to rportd'));
  main.appendChild(card);

  const username = el('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const password = el('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = el('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = el('form', { id: 'login-form' },
    el('label', { for: 'username' }, 'User name', username),
    el('label', { for: 'password' }, 'Password', password),
    submit, status);
  card.appendChild(form);
  username.focus();

  const done = async () => {
    await ctx.refreshMe();
    ctx.navigate('#/devices');
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    status.textContent = '';
    submit.disabled = true;
    try {
      const body = await ctx.api('POST', '/api/v1/login?cookie=true',
        { username: username.value, password: password.value });
      const answer = body && body.data;
      if (answer && answer.two_fa) {
        showSecondFactor(card, form, ctx, username.value, answer, done);
        return;
      }
      await done();
    } catch (error) {
      status.textContent = explain(error);
    } finally {
      submit.disabled = false;
    }
  });
}

// The second step: the server answered a token good only for /verify-2fa.
function showSecondFactor(card, loginForm, ctx, username, answer, done) {
  const status = el('p', { class: 'error', role: 'alert' });
  const code = el('input', { id: 'totp', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', required: true });
  const submit = el('button', { type: 'submit', class: 'primary' }, 'Verify');
  const hint = answer.two_fa.totp_key_status === 'pending'
    ? 'You have no authenticator secret yet: ask an administrator, or create one with rportcli.'
    : 'Enter the code your authenticator app shows.';
  const form = el('form', { id: 'totp-form' }, el('p', {}, hint),
    el('label', { for: 'totp' }, 'Code', code), submit, status);
  loginForm.replaceWith(form);
  code.focus();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    status.textContent = '';
    try {
      await ctx.api('POST', '/api/v1/verify-2fa?cookie=true', { username, token: code.value.trim() },
        { Authorization: `Bearer ${answer.token}` });
      await done();
    } catch (error) {
      status.textContent = explain(error);
    } finally {
      submit.disabled = false;
    }
  });
  void card;
}
