// Herald's webhooks portal: one small script, no framework, no build step.
// Every action calls the public /v1 API with the session token as its
// Bearer credential, so the portal can do nothing the API would refuse
// this session; the API enforces the session's scope. Text from the API is
// always put in the page as text (textContent), never as HTML.
(() => {
  'use strict';

  const token = new URLSearchParams(location.search).get('session') || '';
  const claims = readClaims(token);
  const readOnly = !!claims.ro;
  const endpointLimited = Array.isArray(claims.eps) && claims.eps.length > 0;
  const main = document.getElementById('main');
  const status = document.getElementById('status');
  if (document.body.dataset.primaryColor) {
    document.documentElement.style.setProperty('--primary', document.body.dataset.primaryColor);
  }

  // The claims are not secret (the API checks the signature); the page
  // reads them only to hide what the session may not do.
  function readClaims(tok) {
    try {
      const payload = tok.slice(4, tok.indexOf('.')).replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(payload));
    } catch (e) {
      return {};
    }
  }

  // ---- DOM helpers ----

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function say(msg) {
    status.textContent = msg;
  }

  function badge(state) {
    return h('span', { class: 'badge ' + state, text: state });
  }

  function when(t) {
    if (!t) return '—';
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }

  function field(id, label, control, hint) {
    control.id = id;
    const err = h('p', { class: 'error', id: id + '-error', hidden: true });
    const hintEl = hint ? h('p', { class: 'hint', id: id + '-hint', text: hint }) : null;
    control.setAttribute('aria-describedby', (hint ? id + '-hint ' : '') + id + '-error');
    return h('div', { class: 'field', 'data-field': id }, h('label', { for: id, text: label }), control, hintEl, err);
  }

  function select(options, value) {
    const s = h('select');
    for (const o of options) {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      s.append(h('option', { value: v, selected: v === value, text: label }));
    }
    return s;
  }

  function problemBox(e) {
    const box = h('div', { class: 'alert', role: 'alert' }, e.message || String(e));
    if (e.status) box.prepend(h('strong', { text: e.status + ' ' }));
    return box;
  }

  // ---- API ----

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + token } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = text; }
    }
    if (!res.ok) {
      const err = new Error((data && data.detail) || res.statusText);
      err.status = res.status;
      err.problem = data;
      throw err;
    }
    return data;
  }

  // allPages reads every page of a listing (at most 2000 items).
  async function allPages(path) {
    const out = [];
    let cursor = '';
    for (let i = 0; i < 20; i++) {
      const p = await api('GET', path + '?limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
      out.push(...p.data);
      if (!p.next_cursor) break;
      cursor = p.next_cursor;
    }
    return out;
  }

  // allEndpoints reads the listing, which masks secrets and header values:
  // the portal never loads an endpoint's secret until "Reveal".
  const allEndpoints = () => allPages('/v1/endpoints');
  const allEventTypes = () => allPages('/v1/event-types');

  function successRate(recent) {
    if (!recent) return '—';
    const total = recent.succeeded + recent.failed;
    if (total === 0) return 'no attempts in 24 h';
    return Math.round((100 * recent.succeeded) / total) + '% of ' + total + ' in 24 h';
  }

  function stateCell(ep) {
    const cell = h('span', {}, badge(ep.status));
    if (ep.status === 'disabled' && ep.disabled_reason) cell.append(' ', h('span', { class: 'muted', text: ep.disabled_reason }));
    if (ep.status === 'paused' && ep.backlog && ep.backlog.count) cell.append(' ', h('span', { class: 'muted', text: ep.backlog.count + ' held' }));
    return cell;
  }

  function hashWith(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const s = q.toString();
    return '#' + path + (s ? '?' + s : '');
  }

  // datetime-local inputs hold local time; the API takes RFC 3339.
  function toRFC3339(local) {
    if (!local) return '';
    const d = new Date(local);
    return isNaN(d) ? '' : d.toISOString();
  }
  function toLocalInput(rfc) {
    if (!rfc) return '';
    const d = new Date(rfc);
    if (isNaN(d)) return '';
    const pad = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  // ---- pages ----

  async function pageEndpoints() {
    const eps = await allEndpoints();
    const root = h('section', {}, h('h1', { tabindex: '-1', text: 'Endpoints' }));
    if (!readOnly && !endpointLimited) {
      root.append(h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/endpoints/new', text: 'Add endpoint' })));
    }
    if (eps.length === 0) {
      root.append(h('p', { class: 'muted', text: 'No endpoints yet.' }));
      return root;
    }
    const rows = eps.map((ep) =>
      h('tr', {},
        h('td', { 'data-label': 'Name' }, h('a', { href: '#/endpoints/' + encodeURIComponent(ep.id), text: ep.name || ep.id })),
        h('td', { 'data-label': 'URL', class: 'wrap', text: ep.url }),
        h('td', { 'data-label': 'Events', text: ep.events.join(', ') }),
        h('td', { 'data-label': 'State' }, stateCell(ep)),
        h('td', { 'data-label': 'Success', text: successRate(ep.recent) })));
    root.append(h('table', { class: 'cards' },
      h('thead', {}, h('tr', {}, ['Name', 'URL', 'Events', 'State', 'Success rate'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows)));
    return root;
  }

  async function findEndpoint(id) {
    const ep = (await allEndpoints()).find((e) => e.id === id);
    if (!ep) {
      const e = new Error('endpoint not found');
      e.status = 404;
      throw e;
    }
    return ep;
  }

  async function pageEndpoint(m) {
    const id = decodeURIComponent(m[1]);
    const [ep, types] = await Promise.all([findEndpoint(id), allEventTypes().catch(() => [])]);
    const root = h('section', {}, h('h1', { tabindex: '-1' }, ep.name || ep.id, ' ', badge(ep.status)));
    const kv = (k, v) => [h('dt', { text: k }), h('dd', {}, v)];
    const headers = Object.entries(ep.headers || {}).map(([k, v]) => k + ': ' + v).join('\n');
    const metadata = Object.entries(ep.metadata || {}).map(([k, v]) => k + '=' + v).join('\n');
    root.append(h('dl', { class: 'fields' },
      kv('ID', ep.id), kv('URL', ep.url), kv('Events', ep.events.join(', ')),
      ep.description ? kv('Description', ep.description) : null,
      kv('State', stateCell(ep)), kv('Success rate', successRate(ep.recent)),
      kv('Method', ep.method), kv('Content type', ep.content_type), kv('Signature', ep.signature),
      kv('Payload format', ep.payload_format), kv('Max attempts', ep.max_attempts), kv('Timeout', ep.timeout_ms + ' ms'),
      kv('Rate limit', ep.rate_limit ? ep.rate_limit + ' per second' : 'none'),
      kv('Custom headers', headers ? h('pre', { text: headers }) : 'none'),
      kv('Metadata', metadata ? h('pre', { text: metadata }) : 'none'),
      kv('Created', when(ep.created_at)), kv('Updated', when(ep.updated_at))));

    const actions = h('div', { class: 'actions' },
      h('a', { class: 'button', href: hashWith('/deliveries', { endpoint: ep.id }), text: 'Deliveries' }),
      h('a', { class: 'button', href: hashWith('/dead-letters', { endpoint: ep.id }), text: 'Dead letters' }));
    if (!readOnly) {
      actions.append(h('a', { class: 'button', href: '#/endpoints/' + encodeURIComponent(ep.id) + '/edit', text: 'Edit' }));
      const change = async (body, what) => {
        try {
          await api('PATCH', '/v1/endpoints/' + encodeURIComponent(ep.id), body);
          say(what);
          render();
        } catch (e) {
          actions.after(problemBox(e));
        }
      };
      if (ep.status === 'paused') actions.append(h('button', { type: 'button', class: 'primary', onclick: () => change({ paused: false }, 'Endpoint resumed'), text: 'Resume' }));
      if (ep.status === 'active') actions.append(h('button', { type: 'button', onclick: () => change({ paused: true }, 'Endpoint paused'), text: 'Pause' }));
      if (ep.status === 'disabled') actions.append(h('button', { type: 'button', class: 'primary', onclick: () => change({ status: 'active' }, 'Endpoint enabled'), text: 'Enable' }));
      actions.append(...deleteButton(ep));
    }
    root.append(actions);
    root.append(secretPanel(ep));
    if (!readOnly) {
      root.append(testPanel(ep, types));
      root.append(recoverPanel(ep.id));
    }
    return root;
  }

  function deleteButton(ep) {
    const dialog = h('dialog', { 'aria-labelledby': 'delete-title' },
      h('h2', { id: 'delete-title', text: 'Delete ' + (ep.name || ep.id) + '?' }),
      h('p', { text: 'Deliveries to it stop at once, and its history can no longer be opened from here. This cannot be undone.' }));
    const confirm = h('button', { type: 'button', class: 'danger', text: 'Delete endpoint' });
    const cancel = h('button', { type: 'button', text: 'Cancel', onclick: () => dialog.close() });
    confirm.addEventListener('click', async () => {
      try {
        await api('DELETE', '/v1/endpoints/' + encodeURIComponent(ep.id));
        dialog.close();
        say('Endpoint deleted');
        location.hash = '#/endpoints';
      } catch (e) {
        dialog.append(problemBox(e));
      }
    });
    dialog.append(h('div', { class: 'actions' }, cancel, confirm));
    const open = h('button', { type: 'button', class: 'danger', text: 'Delete…', onclick: () => { dialog.showModal(); cancel.focus(); } });
    return [open, dialog];
  }

  function secretPanel(ep) {
    const panel = h('section', { class: 'panel', 'aria-labelledby': 'secret-title' }, h('h2', { id: 'secret-title', text: 'Signing' }));
    if (ep.signature === 'none') {
      panel.append(h('p', { text: 'Requests to this endpoint are not signed.' }));
      return panel;
    }
    if (ep.signature === 'ed25519') {
      panel.append(h('p', { text: 'Requests are signed with Ed25519. Verify them with this public key:' }),
        h('code', { class: 'secret', id: 'public-key', text: ep.public_key || '' }));
      return panel;
    }
    const shown = h('div', { id: 'secret-value' }, h('p', { class: 'muted', text: 'The secret is hidden.' }));
    const show = (v) => {
      const code = h('code', { class: 'secret', id: 'secret', text: v.secret });
      const copy = h('button', { type: 'button', text: 'Copy', onclick: async () => {
        try { await navigator.clipboard.writeText(v.secret); say('Secret copied'); } catch (e) {
          const r = document.createRange(); r.selectNodeContents(code); const s = getSelection(); s.removeAllRanges(); s.addRange(r); say('Secret selected: copy it with your keyboard');
        }
      } });
      const grace = (v.old_secrets || []).map((o) => h('p', { class: 'muted', text: 'The previous secret also signs until ' + when(o.expires_at) + '.' }));
      shown.replaceChildren(h('p', { text: 'Secret:' }), code, h('div', { class: 'actions' }, copy), grace);
    };
    const reveal = h('button', { type: 'button', text: 'Reveal secret', onclick: async () => {
      try { show(await api('GET', '/v1/endpoints/' + encodeURIComponent(ep.id) + '/secret')); say('Secret shown'); } catch (e) { shown.replaceChildren(problemBox(e)); }
    } });
    panel.append(h('p', { text: 'Requests are signed (' + ep.signature + ') with a secret your receiver verifies.' }), shown, h('div', { class: 'actions' }, reveal));
    if (!readOnly) {
      const graceSel = select([['0', 'none'], ['3600', '1 hour'], ['86400', '24 hours'], ['604800', '7 days']], '86400');
      const rotate = h('button', { type: 'button', text: 'Rotate secret', onclick: async () => {
        try {
          show(await api('POST', '/v1/endpoints/' + encodeURIComponent(ep.id) + '/secret/rotate', { grace_period_seconds: Number(graceSel.value) }));
          say('Secret rotated');
        } catch (e) { shown.replaceChildren(problemBox(e)); }
      } });
      panel.append(h('div', { class: 'filters' }, field('grace', 'Previous secret keeps signing for', graceSel), h('div', {}, rotate)));
    }
    return panel;
  }

  function testPanel(ep, types) {
    const names = ['webhook.test', ...types.map((t) => t.name)];
    const typeSel = select(names, 'webhook.test');
    const out = h('div', { id: 'test-result', 'aria-live': 'polite' });
    const send = h('button', { type: 'button', class: 'primary', text: 'Send test event', onclick: async () => {
      send.disabled = true;
      out.replaceChildren(h('p', { class: 'muted', text: 'Sending…' }));
      try {
        const r = await api('POST', '/v1/endpoints/' + encodeURIComponent(ep.id) + '/test', { event_type: typeSel.value });
        const a = r; // the attempt, with ok
        out.replaceChildren(h('dl', { class: 'fields' },
          h('dt', { text: 'Result' }), h('dd', {}, badge(r.ok ? 'succeeded' : 'failed')),
          h('dt', { text: 'Status' }), h('dd', { id: 'test-status', text: a.response_status ? String(a.response_status) : 'no response' }),
          h('dt', { text: 'Latency' }), h('dd', { text: a.latency_ms.toFixed(1) + ' ms' }),
          a.error ? [h('dt', { text: 'Error' }), h('dd', { text: a.error_class + ': ' + a.error })] : null,
          h('dt', { text: 'Body' }), h('dd', {}, h('pre', { text: (a.response_body || '').slice(0, 300) || '(empty)' }))));
        say('Test sent: ' + (a.response_status || a.error_class));
      } catch (e) {
        out.replaceChildren(problemBox(e));
      } finally {
        send.disabled = false;
      }
    } });
    return h('section', { class: 'panel', 'aria-labelledby': 'test-title' }, h('h2', { id: 'test-title', text: 'Test' }),
      h('div', { class: 'filters' }, field('test-type', 'Event type', typeSel), h('div', {}, send)), out);
  }

  function recoverPanel(endpointID) {
    const since = h('input', { type: 'datetime-local', value: toLocalInput(new Date(Date.now() - 24 * 3600e3).toISOString()) });
    const out = h('div', { 'aria-live': 'polite' });
    const go = h('button', { type: 'button', text: 'Recover', onclick: async () => {
      try {
        const rp = await api('POST', '/v1/endpoints/' + encodeURIComponent(endpointID) + '/recover', { since: toRFC3339(since.value) });
        follow(rp, out);
      } catch (e) { out.replaceChildren(problemBox(e)); }
    } });
    return h('section', { class: 'panel', 'aria-labelledby': 'recover-title' }, h('h2', { id: 'recover-title', text: 'Recover' }),
      h('p', { class: 'muted', text: 'Send again every delivery to this endpoint that failed for good since a time.' }),
      h('div', { class: 'filters' }, field('recover-since', 'Failed since', since), h('div', {}, go)), out);
  }

  function replayText(rp) {
    return 'Replay ' + rp.state + ': ' + rp.replayed + ' of ' + rp.total + ' sent again' +
      (rp.failed ? ', ' + rp.failed + ' failed' : '') + (rp.skipped ? ', ' + rp.skipped + ' already gone' : '') + (rp.error ? ' (' + rp.error + ')' : '');
  }

  // finished is the last replay that ended on this page, shown again once
  // the page is drawn anew with what is left.
  let finished = null;

  // follow shows a replay's progress until it ends.
  async function follow(rp, out) {
    const bar = h('progress', { max: Math.max(rp.total, 1), value: 0, 'aria-label': 'Replay progress' });
    const text = h('p', { id: 'replay-progress' });
    out.replaceChildren(bar, text);
    for (;;) {
      const done = rp.replayed + rp.failed + rp.skipped;
      bar.max = Math.max(rp.total, 1);
      bar.value = done;
      text.textContent = replayText(rp);
      if (rp.state !== 'running') {
        say(text.textContent);
        return rp;
      }
      await new Promise((r) => setTimeout(r, 400));
      if (!out.isConnected) return rp;
      rp = await api('GET', '/v1/dlq/replays/' + encodeURIComponent(rp.id));
    }
  }

  // ---- endpoint form ----

  const formFields = ['name', 'description', 'url', 'events', 'method', 'content_type', 'signature', 'payload_format',
    'headers', 'max_attempts', 'timeout_ms', 'rate_limit', 'metadata'];

  function linesToMap(text, sep) {
    const out = {};
    for (const line of text.split('\n')) {
      const t = line.trim();
      if (!t) continue;
      const i = t.indexOf(sep);
      if (i < 0) out[t] = '';
      else out[t.slice(0, i).trim()] = t.slice(i + 1).trim();
    }
    return out;
  }

  async function pageEndpointForm(m) {
    const id = m[1] ? decodeURIComponent(m[1]) : null;
    const ep = id ? await findEndpoint(id) : null;
    const v = ep || { name: '', description: '', url: '', events: ['*'], method: 'POST', content_type: 'application/json',
      signature: 'standard', payload_format: 'standard', headers: {}, max_attempts: '', timeout_ms: '', rate_limit: '', metadata: {} };
    const c = {
      name: h('input', { type: 'text', value: v.name, required: true, autocomplete: 'off' }),
      description: h('input', { type: 'text', value: v.description || '' }),
      url: h('input', { type: 'url', value: v.url, required: true, inputmode: 'url', autocomplete: 'off' }),
      events: h('input', { type: 'text', value: v.events.join(', ') }),
      method: select(['POST', 'PUT', 'PATCH'], v.method),
      content_type: select(['application/json', 'application/x-www-form-urlencoded'], v.content_type),
      signature: select([['standard', 'Standard Webhooks (HMAC-SHA256)'], ['ed25519', 'Ed25519'], ['github', 'GitHub (X-Hub-Signature-256)'], ['hex', 'Hex HMAC (X-Signature)'], ['none', 'none']], v.signature),
      payload_format: select([['standard', 'envelope {type, timestamp, data}'], ['raw', 'the event data as sent']], v.payload_format),
      headers: h('textarea', { rows: 3 }),
      max_attempts: h('input', { type: 'number', inputmode: 'numeric', value: v.max_attempts }),
      timeout_ms: h('input', { type: 'number', inputmode: 'numeric', value: v.timeout_ms }),
      rate_limit: h('input', { type: 'number', inputmode: 'numeric', value: v.rate_limit }),
      metadata: h('textarea', { rows: 2 }),
    };
    c.headers.value = Object.entries(v.headers || {}).map(([k, x]) => k + ': ' + x).join('\n');
    c.metadata.value = Object.entries(v.metadata || {}).map(([k, x]) => k + '=' + x).join('\n');
    const initial = {};
    for (const k of formFields) initial[k] = c[k].value;
    const top = h('div');
    const form = h('form', { class: 'grid', novalidate: true },
      top,
      field('name', 'Name', c.name),
      field('description', 'Description', c.description),
      field('url', 'URL', c.url, 'Where deliveries go: an https URL of your receiver.'),
      field('events', 'Events', c.events, 'Event types, comma-separated: exact (post.published), a prefix (post.*) or * for all.'),
      field('method', 'Method', c.method),
      field('content_type', 'Content type', c.content_type),
      field('signature', 'Signature', c.signature),
      field('payload_format', 'Payload', c.payload_format),
      field('headers', 'Custom headers', c.headers, ep ? 'One "Name: value" per line. Values are masked; reveal them to change them.' : 'One "Name: value" per line.'),
      field('max_attempts', 'Max attempts', c.max_attempts, 'Leave empty for the default.'),
      field('timeout_ms', 'Timeout (ms)', c.timeout_ms, 'Leave empty for the default.'),
      field('rate_limit', 'Rate limit (requests per second)', c.rate_limit, '0 or empty: none.'),
      field('metadata', 'Metadata', c.metadata, 'One key=value per line; not sent.'));
    if (ep && Object.keys(ep.headers || {}).length) {
      const reveal = h('button', { type: 'button', text: 'Reveal header values', onclick: async () => {
        try {
          const full = await api('GET', '/v1/endpoints/' + encodeURIComponent(ep.id));
          c.headers.value = Object.entries(full.headers || {}).map(([k, x]) => k + ': ' + x).join('\n');
          initial.headers = c.headers.value;
          reveal.remove();
        } catch (e) { top.replaceChildren(problemBox(e)); }
      } });
      form.querySelector('[data-field="headers"]').append(reveal);
    }
    const submit = h('button', { type: 'submit', class: 'primary', text: ep ? 'Save changes' : 'Create endpoint' });
    form.append(h('div', { class: 'actions' }, submit, h('a', { class: 'button', href: ep ? '#/endpoints/' + encodeURIComponent(ep.id) : '#/endpoints', text: 'Cancel' })));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = {};
      for (const k of formFields) {
        const raw = c[k].value;
        if (ep && raw === initial[k]) continue; // PATCH changes what was changed
        switch (k) {
          case 'events': body.events = raw.split(/[\s,]+/).filter(Boolean); break;
          case 'headers': body.headers = linesToMap(raw, ':'); break;
          case 'metadata': body.metadata = linesToMap(raw, '='); break;
          case 'max_attempts': case 'timeout_ms': case 'rate_limit':
            if (raw !== '') body[k] = Number(raw); break;
          case 'description': body[k] = raw; break;
          default: if (raw !== '' || ep) body[k] = raw;
        }
      }
      for (const el of form.querySelectorAll('.error')) { el.hidden = true; el.textContent = ''; }
      for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
      top.replaceChildren();
      submit.disabled = true;
      try {
        const saved = ep ? await api('PATCH', '/v1/endpoints/' + encodeURIComponent(ep.id), body) : await api('POST', '/v1/endpoints', body);
        say(ep ? 'Endpoint saved' : 'Endpoint created');
        location.hash = '#/endpoints/' + encodeURIComponent(saved.id);
      } catch (e) {
        showErrors(form, top, e);
      } finally {
        submit.disabled = false;
      }
    });
    return h('section', {}, h('h1', { tabindex: '-1', text: ep ? 'Edit ' + (ep.name || ep.id) : 'Add endpoint' }), form);
  }

  // showErrors puts each field error of a problem document under its
  // field, and anything else at the top; focus goes to the first.
  function showErrors(form, top, e) {
    const errs = (e.problem && e.problem.errors) || [];
    let first = null;
    const rest = [];
    for (const fe of errs) {
      const name = fe.field.split(/[.[]/)[0];
      const box = form.querySelector('[data-field="' + CSS.escape(name) + '"]');
      if (!box) { rest.push(fe.field + ': ' + fe.message); continue; }
      const msg = box.querySelector('.error');
      msg.hidden = false;
      msg.textContent = (msg.textContent ? msg.textContent + ' ' : '') + (fe.field !== name ? fe.field + ' ' : '') + fe.message;
      const input = box.querySelector('input, select, textarea');
      input.setAttribute('aria-invalid', 'true');
      first = first || input;
    }
    if (!errs.length || rest.length) {
      top.replaceChildren(problemBox(e), rest.length ? h('ul', {}, rest.map((r) => h('li', { text: r }))) : null);
    }
    say('The endpoint was not saved: ' + (errs.length ? errs.length + ' field(s) to fix' : e.message));
    if (first) first.focus();
    else top.scrollIntoView();
  }

  // ---- deliveries ----

  async function pageDeliveries(m, q) {
    const [eps, types] = await Promise.all([allEndpoints(), allEventTypes().catch(() => [])]);
    const root = h('section', {}, h('h1', { tabindex: '-1', text: 'Deliveries' }));
    if (!eps.length) {
      root.append(h('p', { class: 'muted', text: 'No endpoints yet.' }));
      return root;
    }
    const endpoint = q.get('endpoint') || eps[0].id;
    const f = {
      endpoint: select(eps.map((e) => [e.id, e.name || e.id]), endpoint),
      status: select([['', 'all'], ['failed', 'failed'], ['succeeded', 'succeeded']], q.get('status') || ''),
      event_type: h('input', { type: 'text', value: q.get('event_type') || '', list: 'type-list', placeholder: 'post.*' }),
      since: h('input', { type: 'datetime-local', value: toLocalInput(q.get('since')) }),
      until: h('input', { type: 'datetime-local', value: toLocalInput(q.get('until')) }),
    };
    const filters = h('form', { class: 'filters', 'aria-label': 'Filters' },
      field('f-endpoint', 'Endpoint', f.endpoint), field('f-status', 'Status', f.status),
      field('f-type', 'Event type', f.event_type), field('f-since', 'From', f.since), field('f-until', 'To', f.until),
      h('datalist', { id: 'type-list' }, types.map((t) => h('option', { value: t.name }))),
      h('div', {}, h('button', { type: 'submit', class: 'primary', text: 'Apply' })));
    filters.addEventListener('submit', (ev) => {
      ev.preventDefault();
      location.hash = hashWith('/deliveries', { endpoint: f.endpoint.value, status: f.status.value, event_type: f.event_type.value.trim(),
        since: toRFC3339(f.since.value), until: toRFC3339(f.until.value) });
    });
    root.append(filters);
    const params = new URLSearchParams({ limit: '25' });
    for (const k of ['status', 'event_type', 'since', 'until', 'cursor']) if (q.get(k)) params.set(k, q.get(k));
    let page;
    try {
      page = await api('GET', '/v1/endpoints/' + encodeURIComponent(endpoint) + '/attempts?' + params);
    } catch (e) {
      root.append(problemBox(e));
      return root;
    }
    if (!page.data.length) {
      root.append(h('p', { class: 'muted', text: q.get('cursor') ? 'No more attempts.' : 'No attempts match.' }));
    } else {
      root.append(h('table', { class: 'cards', id: 'attempts' },
        h('thead', {}, h('tr', {}, ['Time', 'Event', '#', 'Result', 'Status', 'Latency', 'Detail'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, page.data.map(attemptRow))));
    }
    const nav = h('div', { class: 'actions' });
    const base = { endpoint, status: q.get('status'), event_type: q.get('event_type'), since: q.get('since'), until: q.get('until') };
    if (q.get('cursor')) nav.append(h('a', { class: 'button', href: hashWith('/deliveries', base), text: 'Newest' }));
    if (page.next_cursor) nav.append(h('a', { class: 'button', href: hashWith('/deliveries', { ...base, cursor: page.next_cursor }), text: 'Older' }));
    root.append(nav);
    return root;
  }

  function attemptRow(a) {
    const headers = Object.entries(a.request_headers || {}).sort().map(([k, v]) => k + ': ' + v).join('\n');
    const detail = h('details', { class: 'attempt-detail' }, h('summary', { text: 'Detail' }),
      h('dl', { class: 'fields' },
        h('dt', { text: 'Error class' }), h('dd', { text: a.error_class }),
        a.error ? [h('dt', { text: 'Error' }), h('dd', { text: a.error })] : null,
        h('dt', { text: 'State after' }), h('dd', {}, badge(a.state || 'unknown'), a.next_attempt_at ? ' next attempt ' + when(a.next_attempt_at) : ''),
        h('dt', { text: 'Request headers' }), h('dd', {}, headers ? h('pre', { text: headers }) : 'not recorded'),
        h('dt', { text: 'Response body' }), h('dd', {}, h('pre', { text: a.response_body || '(empty)' })),
        h('dt', { text: 'Event' }), h('dd', {}, h('a', { href: '#/events/' + encodeURIComponent(a.event_id), text: 'State of ' + a.event_id + ' at each endpoint' }))));
    return h('tr', { class: 'attempt ' + a.status },
      h('td', { 'data-label': 'Time', text: when(a.at) }),
      h('td', { 'data-label': 'Event', class: 'wrap' }, a.event_type, ' ', h('a', { href: '#/events/' + encodeURIComponent(a.event_id), text: a.event_id }), a.test ? ' (test)' : ''),
      h('td', { 'data-label': 'Attempt', text: a.attempt }),
      h('td', { 'data-label': 'Result' }, badge(a.status)),
      h('td', { 'data-label': 'Status', text: a.response_status || '—' }),
      h('td', { 'data-label': 'Latency', text: a.latency_ms.toFixed(1) + ' ms' }),
      h('td', {}, detail));
  }

  async function pageEvent(m) {
    const id = decodeURIComponent(m[1]);
    const [ev, eps] = await Promise.all([api('GET', '/v1/events/' + encodeURIComponent(id)), allEndpoints()]);
    const names = Object.fromEntries(eps.map((e) => [e.id, e.name || e.id]));
    const root = h('section', {}, h('h1', { tabindex: '-1', text: 'Event ' + ev.id }),
      h('dl', { class: 'fields' }, h('dt', { text: 'Type' }), h('dd', { text: ev.type }), h('dt', { text: 'Accepted' }), h('dd', { text: when(ev.accepted_at) })));
    root.append(h('h2', { text: 'At each endpoint' }));
    if (!ev.deliveries.length) root.append(h('p', { class: 'muted', text: 'No delivery to show.' }));
    else root.append(h('table', { class: 'cards', id: 'event-deliveries' },
      h('thead', {}, h('tr', {}, ['Endpoint', 'State', 'Attempts', 'Detail'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, ev.deliveries.map((d) => h('tr', {},
        h('td', { 'data-label': 'Endpoint' }, h('a', { href: '#/endpoints/' + encodeURIComponent(d.endpoint_id), text: names[d.endpoint_id] || d.endpoint_id })),
        h('td', { 'data-label': 'State' }, badge(d.state)),
        h('td', { 'data-label': 'Attempts', text: d.attempts.length }),
        h('td', { 'data-label': 'Detail', text: d.reason || (d.next_attempt_at ? 'next attempt ' + when(d.next_attempt_at) : '') }))))));
    root.append(h('h2', { text: 'Data' }), h('pre', { text: JSON.stringify(ev.data, null, 2) }));
    return root;
  }

  // ---- dead letters ----

  async function pageDeadLetters(m, q) {
    const eps = await allEndpoints();
    const names = Object.fromEntries(eps.map((e) => [e.id, e.name || e.id]));
    const root = h('section', {}, h('h1', { tabindex: '-1', text: 'Dead letters' }),
      h('p', { class: 'muted', text: 'Deliveries that used all their attempts, oldest first. Sending one again starts its attempts afresh.' }));
    const epOptions = eps.map((e) => [e.id, e.name || e.id]);
    if (!endpointLimited) epOptions.unshift(['', 'all endpoints']);
    const endpoint = q.get('endpoint') || (endpointLimited && eps[0] ? eps[0].id : '');
    const f = {
      endpoint: select(epOptions, endpoint),
      event_type: h('input', { type: 'text', value: q.get('event_type') || '', placeholder: 'post.*' }),
      since: h('input', { type: 'datetime-local', value: toLocalInput(q.get('since')) }),
      until: h('input', { type: 'datetime-local', value: toLocalInput(q.get('until')) }),
    };
    const filters = h('form', { class: 'filters', 'aria-label': 'Filters' },
      field('d-endpoint', 'Endpoint', f.endpoint), field('d-type', 'Event type', f.event_type),
      field('d-since', 'Died from', f.since), field('d-until', 'Died until', f.until),
      h('div', {}, h('button', { type: 'submit', class: 'primary', text: 'Apply' })));
    filters.addEventListener('submit', (ev) => {
      ev.preventDefault();
      location.hash = hashWith('/dead-letters', { endpoint: f.endpoint.value, event_type: f.event_type.value.trim(),
        since: toRFC3339(f.since.value), until: toRFC3339(f.until.value) });
    });
    root.append(filters);
    const params = new URLSearchParams({ limit: '50' });
    if (endpoint) params.set('endpoint_id', endpoint);
    for (const k of ['event_type', 'since', 'until', 'cursor']) if (q.get(k)) params.set(k, q.get(k));
    const progress = h('div', { id: 'replay', 'aria-live': 'polite' });
    if (finished) {
      progress.append(h('p', { id: 'replay-progress', text: replayText(finished) }));
      finished = null;
    }
    let page;
    try {
      page = await api('GET', '/v1/dlq?' + params);
    } catch (e) {
      root.append(problemBox(e));
      return root;
    }
    if (!readOnly && page.data.length) {
      const filter = { endpoint_id: endpoint || undefined, event_type: q.get('event_type') || undefined, since: q.get('since') || undefined, until: q.get('until') || undefined };
      const any = Object.values(filter).some(Boolean);
      root.append(h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'replay-filter',
        text: any ? 'Replay every dead letter matching these filters' : 'Replay every dead letter',
        onclick: async () => {
          try { finished = await follow(await api('POST', '/v1/dlq/replay', any ? filter : { all: true }), progress); render(); } catch (e) { progress.replaceChildren(problemBox(e)); }
        } })));
    }
    root.append(progress);
    if (!page.data.length) {
      root.append(h('p', { class: 'muted', text: 'No dead letters match.' }));
    } else {
      root.append(h('table', { class: 'cards', id: 'dead-letters' },
        h('thead', {}, h('tr', {}, ['Died', 'Event', 'Endpoint', 'Reason', 'Attempts', ''].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, page.data.map((d) => h('tr', {},
          h('td', { 'data-label': 'Died', text: when(d.dead_at) }),
          h('td', { 'data-label': 'Event', class: 'wrap' }, d.event.type, ' ', h('a', { href: '#/events/' + encodeURIComponent(d.event.id), text: d.event.id })),
          h('td', { 'data-label': 'Endpoint' }, h('a', { href: '#/endpoints/' + encodeURIComponent(d.endpoint_id), text: names[d.endpoint_id] || d.endpoint_id })),
          h('td', { 'data-label': 'Reason', class: 'wrap', text: d.reason }),
          h('td', { 'data-label': 'Attempts', text: d.attempts.length }),
          h('td', {}, readOnly ? null : h('button', { type: 'button', class: 'replay-one', text: 'Replay',
            'aria-label': 'Replay ' + d.event.id, onclick: async () => {
              try { finished = await follow(await api('POST', '/v1/dlq/replay', { id: d.id }), progress); render(); } catch (e) { progress.replaceChildren(problemBox(e)); }
            } })))))));
    }
    if (page.next_cursor) {
      root.append(h('div', { class: 'actions' }, h('a', { class: 'button', text: 'More',
        href: hashWith('/dead-letters', { endpoint, event_type: q.get('event_type'), since: q.get('since'), until: q.get('until'), cursor: page.next_cursor }) })));
    }
    return root;
  }

  async function pageEventTypes() {
    const types = await allEventTypes();
    const root = h('section', {}, h('h1', { tabindex: '-1', text: 'Event types' }));
    if (!types.length) {
      root.append(h('p', { class: 'muted', text: 'No event types are described yet.' }));
      return root;
    }
    for (const t of types) {
      root.append(h('article', { class: 'panel event-type' }, h('h2', { text: t.name }),
        h('p', { text: t.description || 'No description.' }),
        t.example !== null ? h('details', {}, h('summary', { text: 'Example payload' }), h('pre', { text: JSON.stringify(t.example, null, 2) })) : null));
    }
    return root;
  }

  // ---- router ----

  const routes = [
    [/^\/endpoints$/, pageEndpoints],
    [/^\/endpoints\/new$/, () => pageEndpointForm([])],
    [/^\/endpoints\/([^/]+)\/edit$/, pageEndpointForm],
    [/^\/endpoints\/([^/]+)$/, pageEndpoint],
    [/^\/deliveries$/, pageDeliveries],
    [/^\/events\/(.+)$/, pageEvent],
    [/^\/dead-letters$/, pageDeadLetters],
    [/^\/event-types$/, pageEventTypes],
  ];

  let generation = 0;

  // render shows the page the hash names. main's data-view and data-ms
  // say which page is shown and how long it took (API calls and drawing):
  // the browser tests wait on the one and measure the other.
  async function render() {
    const gen = ++generation;
    const raw = location.hash.slice(1) || '/endpoints';
    const [path, qs] = raw.split('?');
    const q = new URLSearchParams(qs || '');
    const section = path.split('/')[1];
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.nav === section || (section === 'events' && a.dataset.nav === 'deliveries')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const t0 = performance.now();
    let node = h('section', {}, h('h1', { tabindex: '-1', text: 'Not found' }));
    for (const [re, fn] of routes) {
      const m = path.match(re);
      if (!m) continue;
      try {
        node = await fn(m, q);
      } catch (e) {
        node = h('section', {}, h('h1', { tabindex: '-1', text: e.status === 404 ? 'Not found' : 'Something went wrong' }), problemBox(e));
      }
      break;
    }
    if (gen !== generation) return;
    main.replaceChildren(node);
    main.dataset.view = raw;
    main.dataset.ms = (performance.now() - t0).toFixed(1);
    const h1 = main.querySelector('h1');
    if (h1 && document.activeElement !== document.body) h1.focus();
    document.title = (h1 ? h1.textContent + ' · ' : '') + (document.querySelector('.brand span') || {}).textContent;
  }

  window.addEventListener('hashchange', render);
  render();
})();
