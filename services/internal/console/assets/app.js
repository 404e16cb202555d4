// app.js — the touchstream web console: plain ES module, no framework.
//
// Hash routes: #/customer (search), #/customer/{id}, #/alerts, #/loyalty,
// #/service-level[?queue=&from=&to=], #/ops, #/audit. Every panel loads on its own: a
// failed call shows an error line in that panel, never breaks the page.
//
// Sign-in: the user pastes an access token; it is kept in sessionStorage (this tab
// only, gone when it closes) and sent as Authorization: Bearer on every call. GET
// /v1/session says who the token is and what the role matrix allows: pages, panels and
// actions the roles may not use are not shown, and a 401 (token expired or revoked)
// brings the sign-in back with the reason. Personal data is shown exactly as the query
// API returns it for the roles (masked, or in clear for a supervisor). Live updates
// come over server-sent events, opened with a short-lived stream ticket
// (POST /v1/stream/tickets) since EventSource cannot send the token.

import { lineChart, barChart } from './charts.js';

// ---- tiny DOM helper --------------------------------------------------------------

// h builds an element; attrs starting with "on" are listeners; children are nodes or
// text (always as text, never parsed as HTML).
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const app = () => document.getElementById('app');
const enc = encodeURIComponent;
const yuan = (fen) => (fen === undefined || fen === null ? '—' : `¥${(fen / 100).toFixed(2)}`);
const pct = (r) => `${(r * 100).toFixed(1)}%`;
const int = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'));
const when = (t) => (t ? new Date(t).toLocaleString('sv-SE').slice(0, 16) : '—');
const dash = (v) => (v === undefined || v === null || v === '' ? '—' : v);

// ---- session ----------------------------------------------------------------------

const tokenKey = 'touchstream.token';
const session = { token: sessionStorage.getItem(tokenKey) || '', me: null };
const may = (route) => !!(session.me && (session.me.allowed || []).includes(route));
const rolesText = () => (session.me && session.me.roles.length ? session.me.roles.join(', ') : 'no role');

// The role-matrix route each page and panel needs.
const pageNeeds = { customer: 'customer', alerts: 'churn_alerts', loyalty: 'loyalty_totals', 'service-level': 'servicelevel_answer_rate', ops: 'ops_status', audit: 'audit_access' };

function signOut(reason) {
  session.token = '';
  session.me = null;
  sessionStorage.removeItem(tokenKey);
  signedOutReason = reason || '';
  render();
}
let signedOutReason = '';

// api calls the query API with the session's token; the error carries the API's
// message. A 401 ends the session (the sign-in shows why).
async function api(path, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.body ? { 'Content-Type': 'application/json' } : {}) };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const res = await fetch(path, { ...opts, headers });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    let msg = body && body.error ? `${body.error.message}${body.error.request_id ? ` (request ${body.error.request_id})` : ''}` : `HTTP ${res.status}`;
    if (res.status === 403) msg = `not allowed for your role (${rolesText()}): ${msg}`;
    const err = new Error(msg);
    err.status = res.status;
    if (res.status === 401 && session.me) setTimeout(() => signOut(`You were signed out: ${msg}`), 0);
    throw err;
  }
  return body;
}

const post = (path, body) => api(path, { method: 'POST', body: JSON.stringify(body) });

// panel makes a titled card; load fills its body, and a failure becomes an error line.
function panel(id, title, load, cls = '') {
  const body = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Loading…'));
  const p = h('section', { class: `panel ${cls}`, id, 'data-testid': id }, h('h2', {}, title), body);
  p.reload = async () => {
    try {
      await load(body);
      p.dataset.loaded = 'true';
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error', 'data-testid': 'panel-error' }, `${title}: ${e.message}`));
      p.dataset.loaded = 'error';
    }
  };
  p.reload();
  return p;
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([k, v, testid]) => [h('dt', {}, k), h('dd', testid ? { 'data-testid': testid } : {}, v)]));
}

function table(cols, rows, attrs = {}) {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { class: c.num ? 'num' : '' }, c.title)))),
    h('tbody', {}, rows));
}

// ---- live streams -----------------------------------------------------------------

// stream opens a server-sent event stream with a fresh stream ticket. EventSource
// reconnects by itself after a cut; when the server refuses it (the ticket expired,
// the token ended), a new ticket is asked for and the stream opened again.
let streams = [];
function stream(url, event, onData, onState) {
  const s = { es: null, closed: false, opened: 0 };
  const open = async () => {
    if (s.closed) return;
    let t;
    try { t = await api('/v1/stream/tickets', { method: 'POST' }); } catch (e) {
      onState && onState(false, s.opened);
      if (e.status !== 401 && e.status !== 403) setTimeout(open, 3000);
      return;
    }
    if (s.closed) return;
    const es = new EventSource(`${url}${url.includes('?') ? '&' : '?'}ticket=${enc(t.ticket)}`);
    s.es = es;
    es.addEventListener('open', () => { s.opened++; onState && onState(true, s.opened); });
    es.addEventListener('error', () => {
      onState && onState(false, s.opened);
      if (es.readyState === EventSource.CLOSED) setTimeout(open, 2000);
    });
    es.addEventListener(event, (m) => { try { onData(JSON.parse(m.data)); } catch (e) { console.warn('bad event', e); } });
  };
  s.close = () => { s.closed = true; if (s.es) s.es.close(); };
  streams.push(s);
  open();
  return s;
}
function closeStreams() { streams.forEach((s) => s.close()); streams = []; }

// ---- routing ----------------------------------------------------------------------

function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

// header shows who is signed in and hides the pages their roles may not use.
function header() {
  const me = session.me;
  document.querySelectorAll('#nav a').forEach((a) => { a.hidden = !me || !may(pageNeeds[a.dataset.route]); });
  const who = document.getElementById('whoami');
  const note = document.getElementById('access-note');
  const out = document.getElementById('signout');
  if (who) who.textContent = me ? `${me.staff_id} (${rolesText()})` : '';
  if (note) {
    note.textContent = !me ? '' : me.access === 'full' ? 'personal data in clear: every read is audited' : 'personal data masked';
    note.dataset.access = me ? me.access : '';
  }
  if (out) out.hidden = !me;
}

function signInPage(root) {
  root.dataset.page = 'signin';
  const input = h('input', { id: 'token-input', 'data-testid': 'token-input', type: 'password', size: 48, autocomplete: 'off', placeholder: 'access token' });
  const status = h('p', { class: signedOutReason ? 'error' : 'muted', id: 'signin-status', 'data-testid': 'signin-status' },
    signedOutReason || 'Paste your access token (from your identity provider, or a development token such as dev-agent-token).');
  root.append(h('h1', {}, 'Sign in'), status, h('form', { class: 'inline', id: 'signin-form', onsubmit: async (ev) => {
    ev.preventDefault();
    const tok = input.value.trim();
    if (!tok) return;
    session.token = tok;
    try {
      session.me = await api('/v1/session');
      sessionStorage.setItem(tokenKey, tok);
      signedOutReason = '';
      render();
    } catch (e) {
      session.token = '';
      status.className = 'error';
      status.textContent = `That token was not accepted: ${e.message}`;
    }
  } }, h('label', {}, 'Access token', input), h('button', { class: 'primary', id: 'signin-button', 'data-testid': 'signin-button', type: 'submit' }, 'Sign in')));
}

function render() {
  closeStreams();
  header();
  const root = app();
  root.replaceChildren();
  if (!session.me) { signInPage(root); return; }
  const { parts, params } = route();
  const first = Object.keys(pageNeeds).find((p) => may(pageNeeds[p])) || 'customer';
  const page = parts[0] || first;
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.route === page));
  root.dataset.page = page;
  if (pageNeeds[page] && !may(pageNeeds[page])) {
    root.append(h('p', { class: 'error', 'data-testid': 'page-forbidden' }, `Your role (${rolesText()}) may not use this page.`));
    return;
  }
  switch (page) {
    case 'customer': customerPage(root, parts[1], params); break;
    case 'alerts': alertsPage(root); break;
    case 'loyalty': loyaltyPage(root); break;
    case 'service-level': serviceLevelPage(root, params); break;
    case 'ops': opsPage(root); break;
    case 'audit': auditPage(root, params); break;
    default: root.append(h('p', { class: 'error' }, `No page ${page}.`));
  }
}

// ---- Customer 360 -----------------------------------------------------------------

function searchForm(root) {
  const input = h('input', { id: 'search-input', 'data-testid': 'search-input', placeholder: 'phone number or customer id', size: 28, autocomplete: 'off' });
  const results = h('div', { id: 'search-results', 'data-testid': 'search-results' });
  const form = h('form', { class: 'inline', id: 'search-form', onsubmit: async (ev) => {
    ev.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    const digits = q.replace(/[\s+-]/g, '');
    if (!/^\d{5,}$/.test(digits)) { location.hash = `#/customer/${enc(q)}`; return; }
    results.replaceChildren(h('p', { class: 'muted' }, 'Searching…'));
    try {
      const r = await api(`/v1/customers?phone=${enc(q)}`);
      if (!r.items.length) { results.replaceChildren(h('p', { class: 'muted', 'data-testid': 'search-empty' }, 'No customer with this number.')); return; }
      results.replaceChildren(table([{ title: 'Customer' }, { title: 'Name' }, { title: 'Phone' }, { title: 'Tier' }, { title: 'Lifecycle' }],
        r.items.map((c) => h('tr', {},
          h('td', {}, h('a', { href: `#/customer/${enc(c.customer_id)}`, 'data-testid': 'search-result', 'data-customer': c.customer_id }, c.customer_id)),
          h('td', {}, dash(c.name)), h('td', {}, dash(c.phone)), h('td', {}, dash(c.tier)), h('td', {}, dash(c.lifecycle))))));
    } catch (e) {
      results.replaceChildren(h('p', { class: 'error', 'data-testid': 'panel-error' }, `Search: ${e.message}`));
    }
  } }, h('label', {}, 'Find a customer', input), h('button', { class: 'primary', id: 'search-button', 'data-testid': 'search-button', type: 'submit' }, 'Search'));
  root.append(form, results);
}

function customerPage(root, id, params) {
  root.append(h('h1', {}, 'Customer 360'));
  searchForm(root);
  if (!id) return;
  const grid = h('div', { class: 'grid' });
  root.append(grid);
  // Only the panels the roles may use.
  const churnPanel = may('churn_customer') ? panel('churn', 'Churn risk', (b) => loadChurn(b, id)) : null;
  grid.append(...[
    panel('profile', 'Profile', (b) => loadProfile(b, id)),
    may('loyalty_member') && panel('loyalty-member', 'Loyalty', (b) => loadMember(b, id)),
    panel('complaints', 'Open complaints', (b) => loadComplaints(b, id)),
    churnPanel,
    may('timeline') && timelinePanel(id, params, () => {
      // A new event may move the churn view (an acknowledgement, a new score).
      if (!churnPanel) return;
      clearTimeout(churnPanel.timer);
      churnPanel.timer = setTimeout(() => churnPanel.reload(), 400);
    }),
  ].filter(Boolean));
}

async function loadProfile(b, id) {
  const { profile: p, access } = await api(`/v1/customers/${enc(id)}`);
  const months = Object.keys(p.monthly_spend || {}).sort();
  const chart = h('div', { id: 'spend-chart' });
  b.replaceChildren(kv([
    ['Customer', p.customer_id, 'profile-id'],
    ['Name', dash(p.name), 'profile-name'],
    ['Phone', dash(p.phone), 'profile-phone'],
    ['ID number', dash(p.id_number)],
    ['Address', dash(p.address)],
    ['Type / segment', `${dash(p.customer_type)} / ${dash(p.segment)}`],
    ['Region', dash(p.region)],
    ['Plan', p.plan ? `${p.plan.name} (${p.plan.kind})` : '—'],
    ['Contract end', dash(p.contract_end)],
    ['Value tier', h('span', { class: 'badge' }, dash(p.tier)), 'profile-tier'],
    ['State', h('span', { class: 'badge' }, dash(p.lifecycle)), 'profile-lifecycle'],
    ['Spend (3 months)', yuan(p.spend_3m_fen)],
    ['Monthly average', yuan(p.monthly_average_fen)],
    ['Events', int(p.events_total)],
    ['Access', access === 'full' ? 'full' : 'masked', 'profile-access'],
  ]), h('h2', {}, 'Monthly spend'), chart);
  barChart(chart, { categories: months, series: [{ name: 'spend', values: months.map((m) => p.monthly_spend[m] / 100) }], yFormat: (v) => `¥${v}` });
}

async function loadMember(b, id) {
  let r;
  try { r = await api(`/v1/loyalty/members/${enc(id)}`); } catch (e) {
    if (e.status === 404) { b.replaceChildren(h('p', { class: 'muted', 'data-testid': 'loyalty-none' }, 'Not a club member.')); return; }
    throw e;
  }
  const a = r.account;
  b.replaceChildren(kv([
    ['Balance', `${int(a.balance)} points`, 'loyalty-balance'],
    ['Tier', h('span', { class: 'badge' }, dash(a.tier)), 'loyalty-tier'],
    ['Expiring within 90 days', int(a.expiring_within_90_days)],
    ['As of', when(a.as_of)],
  ]));
}

async function loadComplaints(b, id) {
  const [prof, sl] = await Promise.allSettled([api(`/v1/customers/${enc(id)}`),
    may('complaints') ? api(`/v1/customers/${enc(id)}/complaints`) : Promise.resolve({ items: [] })]);
  const breach = new Map();
  if (sl.status === 'fulfilled') for (const c of sl.value.items || []) breach.set(c.complaint_id, c);
  if (prof.status === 'rejected') throw prof.reason;
  const open = prof.value.profile.open_complaints || [];
  if (!open.length) { b.replaceChildren(h('p', { class: 'muted', 'data-testid': 'complaints-none' }, 'No open complaint.')); return; }
  const now = Date.now();
  b.replaceChildren(table([{ title: 'Complaint' }, { title: 'Category' }, { title: 'Severity' }, { title: 'Opened' }, { title: 'Deadline' }],
    open.map((c) => {
      const late = (breach.get(c.id) || {}).breached || new Date(c.promised_by).getTime() < now;
      return h('tr', { 'data-testid': 'complaint' }, h('td', {}, c.id), h('td', {}, c.category), h('td', {}, c.severity), h('td', {}, when(c.opened_at)),
        h('td', { class: late ? 'bad' : '' }, when(c.promised_by), late ? ' (past deadline)' : ''));
    })));
}

async function loadChurn(b, id) {
  let r;
  try { r = await api(`/v1/churn/customers/${enc(id)}`); } catch (e) {
    if (e.status === 404) { b.replaceChildren(h('p', { class: 'muted' }, 'No churn score yet.')); return; }
    throw e;
  }
  const d = r.churn || r;
  const score = d.score;
  const hist = h('div', { id: 'churn-history-chart' });
  b.replaceChildren(
    kv([
      ['State group', h('span', { class: `badge ${d.group}` }, d.group), 'churn-group'],
      ['Churn probability', score ? pct(score.probability) : '—', 'churn-score'],
      ['Monthly value', yuan(d.value_fen)],
    ]),
    h('h2', {}, 'Reasons'),
    score && score.reasons && score.reasons.length
      ? table([{ title: 'Feature' }, { title: 'Value', num: true }, { title: 'Contribution', num: true }, { title: 'Events', num: true }],
        score.reasons.map((x) => h('tr', { 'data-testid': 'churn-reason' }, h('td', {}, x.feature), h('td', { class: 'num' }, +x.value.toFixed(3)),
          h('td', { class: 'num' }, x.contribution.toFixed(3)), h('td', { class: 'num' }, (x.events || []).length))))
      : h('p', { class: 'muted' }, 'No reason.'),
    h('h2', {}, 'Alerts'),
    (d.alerts || []).length
      ? table([{ title: 'Alert' }, { title: 'State' }, { title: 'Raised' }, { title: 'Acknowledged' }, { title: 'Actions' }, { title: 'Outcome' }],
        d.alerts.map((a) => h('tr', { 'data-testid': 'churn-alert', 'data-alert': a.alert_id, 'data-state': a.state },
          h('td', {}, a.alert_id), h('td', {}, h('span', { class: `badge ${a.state}` }, a.state)), h('td', {}, when(a.raised_at)),
          h('td', {}, a.acknowledged_by ? `${a.acknowledged_by} ${when(a.acknowledged_at)}` : '—'),
          h('td', {}, (a.actions || []).map((x) => `${x.kind} ${x.offer_id}`).join(', ') || '—'), h('td', {}, dash(a.outcome)))), { id: 'churn-alerts' })
      : h('p', { class: 'muted' }, 'No alert.'),
    h('h2', {}, 'Score history'), hist);
  lineChart(hist, { series: [{ name: 'score', points: (d.history || []).map((p) => ({ x: new Date(p.at), y: p.score })) }], yMin: 0, yMax: 1, yFormat: pct });
}

const eventTypes = ['customer.registered', 'customer.updated', 'plan.changed', 'store.visited', 'call.completed', 'recharge.completed', 'recharge.reversed',
  'bill.issued', 'bill.adjusted', 'bill.paid', 'complaint.opened', 'complaint.resolved', 'usage.summarized', 'network.incident', 'survey.answered',
  'offer.presented', 'offer.accepted', 'points.redeemed', 'points.adjusted', 'device.changed', 'number.port_out_requested', 'subscription.terminated',
  'event.retracted', 'alert.acknowledged', 'alert.closed'];

function timelinePanel(id, params, onLive) {
  const list = h('ul', { class: 'timeline', id: 'timeline', 'data-testid': 'timeline', 'data-live': 'connecting' });
  const type = h('select', { id: 'timeline-type', 'data-testid': 'timeline-type' }, h('option', { value: '' }, 'all types'), eventTypes.map((t) => h('option', { value: t }, t)));
  const source = h('input', { id: 'timeline-source', placeholder: 'source (channel) URI', size: 30 });
  const from = h('input', { id: 'timeline-from', type: 'date' });
  const to = h('input', { id: 'timeline-to', type: 'date' });
  const dot = h('span', { class: 'live-dot', title: 'live updates' });
  const more = h('button', { type: 'button', hidden: true }, 'Older');
  let next = null;
  const filters = () => {
    const q = new URLSearchParams();
    if (type.value) q.set('type', type.value);
    if (source.value.trim()) q.set('source', source.value.trim());
    if (from.value) q.set('from', new Date(`${from.value}T00:00:00`).toISOString());
    if (to.value) q.set('to', new Date(`${to.value}T00:00:00`).toISOString());
    return q;
  };
  const matches = (e) => {
    if (type.value && e.type !== type.value) return false;
    if (source.value.trim() && e.source !== source.value.trim()) return false;
    const t = new Date(e.time).getTime();
    if (from.value && t < new Date(`${from.value}T00:00:00`).getTime()) return false;
    if (to.value && t >= new Date(`${to.value}T00:00:00`).getTime()) return false;
    return true;
  };
  const item = (e, live) => h('li', { class: `${live ? 'live' : ''} ${e.retracted_by ? 'retracted' : ''}`, 'data-testid': 'timeline-entry', 'data-seq': e.seq, 'data-type': e.type, 'data-id': e.id, 'data-time': new Date(e.time).getTime() },
    h('span', {}, when(e.time)), h('span', {}, h('strong', {}, e.type), h('br'), h('span', { class: 'muted' }, e.source.replace('urn:touchstream:', ''))),
    h('span', { class: 'data' }, JSON.stringify(e.data)));
  if (params.get('type')) type.value = params.get('type');
  const seen = new Set();
  const load = async (b, append) => {
    const q = filters();
    if (append && next) q.set('cursor', next);
    let r;
    try { r = await api(`/v1/customers/${enc(id)}/timeline?${q}`); } catch (e) {
      if (e.status === 404 && !append) { list.replaceChildren(h('li', { class: 'muted' }, 'No event matches.')); return; }
      throw e;
    }
    if (!append) { list.replaceChildren(); seen.clear(); }
    for (const e of r.items) { seen.add(`${e.stream}:${e.seq}`); list.append(item(e, false)); }
    next = r.next;
    more.hidden = !next;
  };
  const p = panel('timeline-panel', 'Timeline', async (b) => {
    if (!b.contains(list)) {
      b.replaceChildren(h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); p.reload(); } },
        h('label', {}, 'Type', type), h('label', {}, 'Source', source), h('label', {}, 'From', from), h('label', {}, 'To', to),
        h('button', { type: 'submit', id: 'timeline-apply' }, 'Filter'), h('span', {}, dot, 'live')), list, more);
      more.addEventListener('click', () => load(b, true).catch((e) => b.append(h('p', { class: 'error' }, e.message))));
    }
    await load(b, false);
  }, 'wide');
  stream(`/v1/stream/customers/${enc(id)}`, 'timeline', (e) => {
    const key = `${e.stream}:${e.seq}`;
    if (seen.has(key)) return;
    seen.add(key);
    if (matches(e)) {
      // Newest first by event time: insert before the first older entry.
      const li = item(e, true);
      const t = new Date(e.time).getTime();
      const after = [...list.children].find((c) => c.dataset.seq && +c.dataset.time <= t);
      if (after) list.insertBefore(li, after); else list.append(li);
      [...list.children].forEach((c) => { if (!c.dataset.seq) c.remove(); });
    }
    onLive && onLive(e);
  }, (on, opened) => {
    dot.classList.toggle('on', on);
    list.dataset.live = on ? 'open' : 'reconnecting';
    if (on && opened > 1) p.reload(); // events landed while away are not replayed
  });
  return p;
}

// ---- Churn alert queue ------------------------------------------------------------

function alertsPage(root) {
  root.append(h('h1', {}, 'Churn alert queue'));
  let rows = [];
  let sortKey = 'priority';
  let next = null;
  const fresh = new Set();
  const body = h('div', { id: 'alerts-body' });
  const status = h('p', { class: 'status', id: 'alerts-status', 'data-testid': 'alerts-status' });
  const dot = h('span', { class: 'live-dot' });
  const sorter = (key, label) => h('button', { type: 'button', class: 'sort', 'data-testid': `sort-${key}`, onclick: () => { sortKey = key; draw(); } }, label);
  const act = async (a, btn, what, fn) => {
    btn.disabled = true;
    const line = document.querySelector(`[data-testid=action-status][data-alert="${CSS.escape(a.alert_id)}"]`);
    try {
      const r = await fn();
      if (line) line.textContent = `${what}: sent (${r && r.type ? r.type : 'accepted'})`;
      setTimeout(() => reload(), 800);
    } catch (e) {
      if (line) { line.textContent = `${what} failed: ${e.message}`; line.className = 'status error'; }
      btn.disabled = false;
    }
  };
  const actions = (a) => {
    const base = `/v1/churn/alerts/${enc(a.alert_id)}`;
    const offer = h('input', { placeholder: 'offer id', size: 8, 'data-testid': 'offer-id' });
    const kind = h('input', { placeholder: 'offer kind', size: 10, value: 'retention_bundle' });
    const ack = h('button', { type: 'button', 'data-testid': 'ack-button', disabled: a.state !== 'open' }, 'Acknowledge');
    ack.addEventListener('click', () => act(a, ack, 'acknowledge', () => post(`${base}/acknowledge`, {})));
    const offered = h('button', { type: 'button', 'data-testid': 'offer-presented-button' }, 'Offer presented');
    offered.addEventListener('click', () => act(a, offered, 'offer presented', () => post(`${base}/actions`, { kind: 'offer_presented', offer_id: offer.value.trim(), offer_kind: kind.value.trim() })));
    const accepted = h('button', { type: 'button', 'data-testid': 'offer-accepted-button' }, 'Offer accepted');
    accepted.addEventListener('click', () => act(a, accepted, 'offer accepted', () => post(`${base}/actions`, { kind: 'offer_accepted', offer_id: offer.value.trim(), offer_kind: kind.value.trim() })));
    const retained = h('button', { type: 'button', 'data-testid': 'close-retained-button' }, 'Close: retained');
    retained.addEventListener('click', () => act(a, retained, 'close', () => post(`${base}/close`, { outcome: 'retained' })));
    const churned = h('button', { type: 'button', 'data-testid': 'close-churned-button' }, 'Close: churned');
    churned.addEventListener('click', () => act(a, churned, 'close', () => post(`${base}/close`, { outcome: 'churned' })));
    return h('div', {}, h('div', { class: 'row-actions' }, ack, offer, kind, offered, accepted, retained, churned),
      h('div', { class: 'status', 'data-testid': 'action-status', 'data-alert': a.alert_id }));
  };
  const draw = () => {
    const sorted = [...rows].sort((x, y) => (y[sortKey] ?? 0) - (x[sortKey] ?? 0) || String(y.alert_id).localeCompare(String(x.alert_id)));
    body.dataset.sort = sortKey;
    if (!sorted.length) { body.replaceChildren(h('p', { class: 'muted', 'data-testid': 'alerts-empty' }, 'No open alert.')); return; }
    body.replaceChildren(h('table', { id: 'alerts-table', 'data-testid': 'alerts-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Customer'), h('th', {}, 'State'), h('th', { class: 'num' }, sorter('score', 'Risk ▾')),
        h('th', { class: 'num' }, sorter('value_fen', 'Value ▾')), h('th', { class: 'num' }, sorter('priority', 'Priority ▾')), h('th', {}, 'Raised'),
        h('th', {}, 'Top reasons'), h('th', {}, 'Desk'))),
      h('tbody', {}, sorted.map((a) => h('tr', { class: fresh.has(a.alert_id) ? 'new' : '', 'data-testid': 'alert-row', 'data-alert': a.alert_id, 'data-customer': a.customer_id, 'data-state': a.state },
        h('td', {}, h('a', { href: `#/customer/${enc(a.customer_id)}` }, a.customer_id)), h('td', {}, h('span', { class: `badge ${a.state}` }, a.state)),
        h('td', { class: 'num' }, pct(a.score)), h('td', { class: 'num' }, yuan(a.value_fen)), h('td', { class: 'num' }, (a.priority ?? 0).toFixed(1)),
        h('td', {}, when(a.raised_at)), h('td', {}, (a.reasons || []).slice(0, 3).map((r) => r.feature).join(', ')),
        h('td', {}, may('churn_acknowledge') ? actions(a) : h('span', { class: 'muted' }, 'view only')))))));
  };
  const reload = async () => {
    try {
      const r = await api('/v1/churn/alerts?limit=100');
      rows = r.items || [];
      next = r.next_cursor;
      more.hidden = !next;
      draw();
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error', 'data-testid': 'panel-error' }, `Alerts: ${e.message}`));
    }
  };
  const more = h('button', { type: 'button', hidden: true, onclick: async () => {
    try {
      const r = await api(`/v1/churn/alerts?limit=100&cursor=${enc(next)}`);
      rows = rows.concat(r.items || []);
      next = r.next_cursor;
      more.hidden = !next;
      draw();
    } catch (e) { status.textContent = e.message; }
  } }, 'More');
  root.append(h('section', { class: 'panel wide', id: 'alerts', 'data-testid': 'alerts' }, h('h2', {}, dot, 'Open alerts, highest risk × value first'), status, body, more));
  reload();
  stream('/v1/stream/alerts', 'alert', (a) => {
    if (rows.some((r) => r.alert_id === a.alert_id)) return;
    rows.push(a);
    fresh.add(a.alert_id);
    status.textContent = `New alert for ${a.customer_id}`;
    draw();
  }, (on) => { dot.classList.toggle('on', on); body.dataset.live = on ? 'open' : 'reconnecting'; });
}

// ---- Loyalty club -----------------------------------------------------------------

function loyaltyPage(root) {
  root.append(h('h1', {}, 'Loyalty club'));
  const grid = h('div', { class: 'grid' });
  root.append(grid);
  grid.append(panel('loyalty-totals', 'Points', async (b) => {
    const { totals: t } = await api('/v1/loyalty/totals?months=12');
    const months = (t.months || []).map((m) => m.month);
    const perMonth = h('div', { id: 'loyalty-months-chart' });
    const tiers = h('div', { id: 'loyalty-tiers-chart' });
    const tierNames = Object.keys(t.tiers || {}).sort();
    b.replaceChildren(kv([
      ['Members', int(t.members), 'loyalty-members'],
      ['Points outstanding', int(t.points_outstanding), 'loyalty-outstanding'],
      ['Points overdrawn', int(t.points_overdrawn)],
    ]), h('h2', {}, 'Earned, redeemed and expired per month'), perMonth,
    table([{ title: 'Month' }, { title: 'Earned', num: true }, { title: 'Bonus', num: true }, { title: 'Redeemed', num: true }, { title: 'Expired', num: true }, { title: 'Net', num: true }],
      (t.months || []).map((m) => h('tr', { 'data-testid': 'loyalty-month' }, h('td', {}, m.month), h('td', { class: 'num' }, int(m.earned)), h('td', { class: 'num' }, int(m.bonus)),
        h('td', { class: 'num' }, int(m.redeemed)), h('td', { class: 'num' }, int(m.expired)), h('td', { class: 'num' }, int(m.net))))),
    h('h2', {}, 'Tier distribution'), tiers);
    barChart(perMonth, { categories: months, series: ['earned', 'redeemed', 'expired'].map((k) => ({ name: k, values: (t.months || []).map((m) => m[k]) })), yFormat: int });
    barChart(tiers, { categories: tierNames, series: [{ name: 'members', values: tierNames.map((n) => t.tiers[n]) }], yFormat: int });
  }, 'wide'));
}

// ---- Service level ----------------------------------------------------------------

function serviceLevelPage(root, params) {
  root.append(h('h1', {}, 'Service level'));
  const queue = h('input', { id: 'sl-queue', 'data-testid': 'sl-queue', placeholder: 'all queues', size: 12, value: params.get('queue') || '' });
  const from = h('input', { id: 'sl-from', 'data-testid': 'sl-from', placeholder: 'RFC 3339', size: 26, value: params.get('from') || '' });
  const to = h('input', { id: 'sl-to', 'data-testid': 'sl-to', placeholder: 'RFC 3339', size: 26, value: params.get('to') || '' });
  const period = () => {
    const q = new URLSearchParams();
    if (from.value.trim()) q.set('from', from.value.trim());
    if (to.value.trim()) q.set('to', to.value.trim());
    return q;
  };
  root.append(h('form', { class: 'inline', onsubmit: (ev) => {
    ev.preventDefault();
    const q = period();
    if (queue.value.trim()) q.set('queue', queue.value.trim());
    location.hash = `#/service-level?${q}`;
  } }, h('label', {}, 'Queue', queue), h('label', {}, 'From', from), h('label', {}, 'To', to), h('button', { type: 'submit' }, 'Show'),
  h('span', { class: 'muted' }, 'default: the last 24 hours')));
  const grid = h('div', { class: 'grid' });
  root.append(grid);
  grid.append(panel('sl-rate', '20-second answer rate against 85%', async (b) => {
    const q = period();
    if (queue.value.trim()) q.set('queue', queue.value.trim());
    const r = await api(`/v1/service-level/answer-rate?${q}`);
    const t = r.total;
    const chart = h('div', { id: 'sl-chart', 'data-testid': 'sl-chart' });
    b.replaceChildren(
      h('p', {}, h('span', { class: `big ${t.offered ? (t.meets_target ? 'ok' : 'bad') : 'muted'}`, id: 'sl-total-rate', 'data-testid': 'sl-total-rate' }, t.offered ? pct(t.answer_rate) : '—'),
        ' ', h('span', { class: 'muted' }, `${r.queue || 'all queues'}: ${int(t.answered_within_20s)} of ${int(t.offered)} offered answered within 20 s; target ${pct(t.target)}`)),
      chart,
      table([{ title: 'Hour' }, { title: 'Offered', num: true }, { title: 'Answered', num: true }, { title: '≤ 20 s', num: true }, { title: 'Abandoned', num: true }, { title: 'Rate', num: true }],
        r.hours.map((x) => h('tr', { 'data-testid': 'sl-hour' }, h('td', {}, when(x.hour)), h('td', { class: 'num' }, int(x.offered)), h('td', { class: 'num' }, int(x.answered)),
          h('td', { class: 'num' }, int(x.answered_within_20s)), h('td', { class: 'num' }, int(x.abandoned)),
          h('td', { class: `num ${x.meets_target ? 'ok' : 'bad'}` }, pct(x.answer_rate))))));
    lineChart(chart, { series: [{ name: r.queue || 'all queues', points: r.hours.map((x) => ({ x: new Date(x.hour), y: x.answer_rate })) }],
      yMin: 0, yMax: 1, yFormat: pct, target: { y: t.target || 0.85, label: `target ${pct(t.target || 0.85)}` } });
  }, 'wide'), panel('sl-summary', 'Today by queue', async (b) => {
    const { summary: s } = await api('/v1/service-level/summary');
    b.replaceChildren(kv([
      ['Open complaints', int(s.open_complaints)], ['Past deadline', int(s.past_deadline), 'sl-past-deadline'],
      ['Enterprise past deadline', int(s.enterprise_past_deadline)], ['Breached today', int(s.breached_today)],
    ]), table([{ title: 'Queue' }, { title: 'Offered', num: true }, { title: 'Rate', num: true }],
      (s.queues || []).map((x) => h('tr', {}, h('td', {}, h('a', { href: `#/service-level?queue=${enc(x.queue)}` }, x.queue)), h('td', { class: 'num' }, int(x.offered)),
        h('td', { class: `num ${x.meets_target ? 'ok' : 'bad'}` }, x.offered ? pct(x.answer_rate) : '—')))));
  }), panel('sl-breaches', 'Complaint breaches', async (b) => {
    const r = await api(`/v1/service-level/breaches?${period()}`);
    if (!r.items.length) { b.replaceChildren(h('p', { class: 'muted' }, 'No breach in the period.')); return; }
    b.replaceChildren(table([{ title: 'Customer' }, { title: 'Complaint' }, { title: 'Deadline' }, { title: 'Breached' }, { title: 'Reason' }],
      r.items.map((c) => h('tr', { 'data-testid': 'sl-breach' }, h('td', {}, h('a', { href: `#/customer/${enc(c.customer_id)}` }, c.customer_id)), h('td', {}, c.complaint_id),
        h('td', {}, when(c.promised_by)), h('td', {}, when(c.breached_at)), h('td', {}, `${dash(c.breach_reason)}${c.enterprise ? ' (enterprise)' : ''}`)))));
  }));
}

// ---- Operations -------------------------------------------------------------------

function opsPage(root) {
  root.append(h('h1', {}, 'Operations'));
  const grid = h('div', { class: 'grid' });
  root.append(grid);
  grid.append(panel('ops-status', 'Projections: lag per partition', async (b) => {
    const s = await api('/v1/ops/status');
    const chart = h('div', { id: 'ops-lag-chart' });
    const targets = s.targets || [];
    b.replaceChildren(chart, table([{ title: 'Target' }, { title: 'Serving' }, { title: 'Applied', num: true }, { title: 'Lag (events)', num: true }, { title: 'Lag (s)', num: true }, { title: 'Parked', num: true }, { title: 'Partitions' }],
      targets.map((t) => h('tr', { 'data-testid': 'ops-target', 'data-target': t.target }, h('td', {}, t.target), h('td', {}, dash(t.serving)), h('td', { class: 'num' }, int(t.applied)),
        h('td', { class: `num ${t.lag_events ? 'warn' : ''}` }, int(t.lag_events)), h('td', { class: 'num' }, (t.lag_seconds || 0).toFixed(1)), h('td', { class: `num ${t.parked ? 'bad' : ''}` }, int(t.parked)),
        h('td', {}, (t.partitions || []).map((p) => `${p.partition}:${p.lag_events}`).join(' '))))),
    h('h2', {}, 'Rebuilds in progress'),
    (s.rebuilds || []).length ? table([{ title: 'Target' }, { title: 'Projection' }, { title: 'Progress' }, { title: 'Started' }],
      s.rebuilds.map((r) => {
        const bar = h('div');
        bar.style.width = `${r.total ? Math.min(100, (100 * r.seq) / r.total) : 0}%`;
        return h('tr', { 'data-testid': 'ops-rebuild' }, h('td', {}, r.target), h('td', {}, r.projection), h('td', {}, h('div', { class: 'progress', title: `${r.seq} / ${r.total}` }, bar), `${int(r.seq)} / ${int(r.total)}`), h('td', {}, when(r.started_at)));
      })) : h('p', { class: 'muted' }, 'None.'));
    barChart(chart, { categories: targets.map((t) => t.target), series: [{ name: 'lag (events)', values: targets.map((t) => t.lag_events) }], yFormat: int });
  }, 'wide'), panel('ops-dlq', 'Dead letters', async (b) => {
    const [s, l] = await Promise.all([api('/v1/ops/status'), api('/v1/ops/dead-letters?status=parked&limit=50')]);
    b.replaceChildren(
      (s.dead_letters || []).length ? table([{ title: 'Target' }, { title: 'Status' }, { title: 'Count', num: true }],
        s.dead_letters.map((d) => h('tr', {}, h('td', {}, d.target), h('td', {}, d.status), h('td', { class: 'num' }, int(d.count))))) : h('p', { class: 'muted' }, 'No dead letter.'),
      h('h2', {}, 'Parked'),
      (l.items || []).length ? table([{ title: 'Id' }, { title: 'Target' }, { title: 'Event' }, { title: 'Customer' }, { title: 'Error' }, { title: 'Parked' }],
        l.items.map((d) => h('tr', { 'data-testid': 'ops-dead-letter' }, h('td', {}, d.id), h('td', {}, d.target), h('td', {}, `${dash(d.event_type)} #${d.seq}`), h('td', {}, dash(d.customer_id)),
          h('td', {}, d.error), h('td', {}, when(d.parked_at))))) : h('p', { class: 'muted' }, 'None parked.'));
  }));
}

// ---- Access audit -----------------------------------------------------------------

function auditPage(root, params) {
  root.append(h('h1', {}, 'Access audit'));
  const customer = h('input', { id: 'audit-customer', 'data-testid': 'audit-customer', placeholder: 'customer id', size: 16, value: params.get('customer') || '' });
  const staffIn = h('input', { id: 'audit-staff', 'data-testid': 'audit-staff', placeholder: 'staff id', size: 16, value: params.get('staff') || '' });
  root.append(h('form', { class: 'inline', onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (customer.value.trim()) q.set('customer', customer.value.trim());
    if (staffIn.value.trim()) q.set('staff', staffIn.value.trim());
    location.hash = `#/audit?${q}`;
  } }, h('label', {}, 'Customer', customer), h('label', {}, 'Staff', staffIn), h('button', { type: 'submit' }, 'Show')));
  root.append(panel('audit-reads', 'Reads of personal data, newest first', async (b) => {
    const q = new URLSearchParams({ limit: '100' });
    if (params.get('customer')) q.set('customer', params.get('customer'));
    if (params.get('staff')) q.set('staff', params.get('staff'));
    const r = await api(`/v1/audit/access?${q}`);
    if (!r.items.length) { b.replaceChildren(h('p', { class: 'muted' }, 'No read recorded.')); return; }
    b.replaceChildren(table([{ title: 'When' }, { title: 'Staff' }, { title: 'Roles' }, { title: 'Customer' }, { title: 'Fields' }, { title: 'Access' }, { title: 'Route' }, { title: 'Request' }],
      r.items.map((e) => h('tr', { 'data-testid': 'audit-entry' }, h('td', {}, when(e.at)), h('td', {}, e.staff_id), h('td', {}, e.roles.join(', ')),
        h('td', {}, h('a', { href: `#/customer/${enc(e.customer_id)}` }, e.customer_id)), h('td', {}, e.fields.join(', ')),
        h('td', { class: e.access === 'full' ? 'warn' : '' }, e.access), h('td', {}, e.route), h('td', { class: 'muted' }, e.request_id)))));
  }, 'wide'));
}

// ---- start ------------------------------------------------------------------------

document.getElementById('signout')?.addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', render);
(async () => {
  if (session.token) {
    try { session.me = await api('/v1/session'); } catch (e) {
      session.token = '';
      sessionStorage.removeItem(tokenKey);
      signedOutReason = `Signed out: ${e.message}`;
    }
  }
  render();
})();
