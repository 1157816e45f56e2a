// clicklake dashboard: plain JS over the HTTP read API and /metrics, no build step.
//
// The view is the URL: ?start=&end=&granularity=&ad=&device=&country=&user=
// (all optional; a copied link reproduces the view). Each render sets
// <body data-ready="0"> while it loads and "1" when every part is drawn;
// the System section sets data-system-ready="1" and counts data-scrapes after
// each /metrics scrape.
// The Chart.js instances are on canvases clicks-chart, device-chart and
// country-chart (Chart.getChart(id)).
(function () {
  'use strict';

  const FIELDS = ['start', 'end', 'granularity', 'ad', 'device', 'country', 'user'];
  const GRANULARITIES = ['minute', 'hour', 'day', 'month'];
  const TOKEN_KEY = 'clicklake.token';
  const TOP_LIMIT = 10;
  const FILL_LIMIT = 20000; // windows: empty ones are drawn as 0 up to this many
  const USER_ROWS = 1000; // rows shown in the user drill-down table
  const SCRAPE_MS = 5000;
  const COLORS = {
    clicks: '#1f6fb4',
    country: '#e08a1e',
    users: '#2e9d4a',
    conversions: '#8a5cc2',
    provisional: '#d62728',
    bar: '#6c8ebf',
    selected: '#e08a1e',
  };

  const $ = (id) => document.getElementById(id);
  const HAS_CHART = typeof window.Chart === 'function';

  // ---------- small helpers ----------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const nf = new Intl.NumberFormat('en-US');
  const num = (n) => (n === null || n === undefined || Number.isNaN(n) ? '—' : nf.format(n));
  const fixed = (n, d = 1) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(d));

  function ymd(d) {
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }

  /** Epoch ms of an API time argument (YYYY-MM-DD or RFC 3339), or NaN. */
  function parseTime(s) {
    if (!s) return NaN;
    if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return Date.parse(s + 'T00:00:00Z');
    return Date.parse(s);
  }

  /** Epoch ms of a timestamp the API returned (UTC; a zone is added when missing). */
  function parseStamp(s) {
    if (typeof s === 'number') return s;
    let t = String(s).trim().replace(' ', 'T');
    if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(t)) t += 'Z';
    return Date.parse(t);
  }

  /** The label of a window: minute/hour "YYYY-MM-DD HH:MM", day "YYYY-MM-DD", month "YYYY-MM" (UTC). */
  function windowLabel(ms, granularity) {
    const d = new Date(ms);
    const day = ymd(d);
    if (granularity === 'month') return day.slice(0, 7);
    if (granularity === 'day') return day;
    return `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  }

  function timeText(s) {
    const ms = parseStamp(s);
    if (Number.isNaN(ms)) return String(s);
    const d = new Date(ms);
    return `${ymd(d)} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  }

  function floorTo(ms, granularity) {
    const d = new Date(ms);
    switch (granularity) {
      case 'minute': return Math.floor(ms / 60000) * 60000;
      case 'hour': return Math.floor(ms / 3600000) * 3600000;
      case 'day': return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
      case 'month': return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      default: return NaN;
    }
  }

  function nextWindow(ms, granularity) {
    const d = new Date(ms);
    switch (granularity) {
      case 'minute': return ms + 60000;
      case 'hour': return ms + 3600000;
      case 'day': return ms + 86400000;
      case 'month': return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      default: return NaN;
    }
  }

  /** Every window start in [start, end) at this granularity, or null when too many / unknown. */
  function windowStarts(start, end, granularity) {
    const a = parseTime(start);
    const b = parseTime(end);
    if (!Number.isFinite(a) || !Number.isFinite(b) || b <= a || !GRANULARITIES.includes(granularity)) return null;
    const out = [];
    for (let t = floorTo(a, granularity); t < b; t = nextWindow(t, granularity)) {
      out.push(t);
      if (out.length > FILL_LIMIT) return null;
    }
    return out;
  }

  function ago(seconds) {
    if (!Number.isFinite(seconds)) return '—';
    const s = Math.abs(seconds);
    const sign = seconds < 0 ? 'in ' : '';
    const tail = seconds < 0 ? '' : ' ago';
    if (s < 120) return `${sign}${Math.round(s)} s${tail}`;
    if (s < 7200) return `${sign}${Math.round(s / 60)} min${tail}`;
    if (s < 172800) return `${sign}${fixed(s / 3600, 1)} h${tail}`;
    return `${sign}${fixed(s / 86400, 1)} days${tail}`;
  }

  // ---------- token ----------

  function getToken() {
    try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function setToken(t) {
    try {
      if (t) localStorage.setItem(TOKEN_KEY, t);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage unavailable: the token lives only in the field */ }
  }

  function showTokenState() {
    $('token-state').textContent = getToken() ? 'token saved' : 'no token';
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(path, status, message) {
      super(message);
      this.path = path;
      this.status = status;
    }
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    const token = $('token').value.trim();
    if (token) headers.Authorization = 'Bearer ' + token;
    let r;
    try {
      r = await fetch(path, { headers, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(path, 0, 'network error: ' + e.message);
    }
    const text = await r.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { /* not JSON */ }
    if (!r.ok) {
      const msg = body && typeof body.error === 'string' ? body.error : (text.trim() || r.statusText);
      throw new ApiError(path, r.status, msg);
    }
    if (body === null) throw new ApiError(path, r.status, 'the reply is not JSON: ' + text.slice(0, 200));
    return body;
  }

  const qs = (o) => new URLSearchParams(o).toString();

  // ---------- errors and status ----------

  function clearErrors() {
    const box = $('errors');
    box.replaceChildren();
    box.hidden = true;
  }

  function showError(what, e) {
    const box = $('errors');
    const status = e && e.status ? `HTTP ${e.status}` : 'error';
    const where = e && e.path ? ` (${e.path})` : '';
    box.append(el('div', { class: 'error' }, el('strong', { text: `${what}: ` }),
      `${status}: ${e && e.message ? e.message : e}`, el('span', { class: 'muted', text: where })));
    box.hidden = false;
    if (!(e instanceof ApiError)) console.error(e);
  }

  function setStatus(text) { $('status').textContent = text; }

  // ---------- state <-> URL and form ----------

  function defaults() {
    const now = new Date();
    const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
    const start = new Date(end.getTime() - 7 * 86400000);
    return { start: ymd(start), end: ymd(end), granularity: 'hour', ad: '', device: '', country: '', user: '' };
  }

  function readUrl() {
    const p = new URLSearchParams(location.search);
    const d = defaults();
    const s = {};
    for (const f of FIELDS) s[f] = (p.has(f) ? p.get(f) : d[f]).trim();
    if (!s.granularity) s.granularity = d.granularity;
    return s;
  }

  function writeForm(s) {
    for (const f of FIELDS) {
      const input = $(f);
      if (f === 'granularity' && ![...input.options].some((o) => o.value === s[f])) {
        // an unknown value from a link: keep it so the server names the problem
        input.append(el('option', { value: s[f], text: s[f] }));
      }
      input.value = s[f];
    }
  }

  function readForm() {
    const s = {};
    for (const f of FIELDS) s[f] = $(f).value.trim();
    return s;
  }

  function writeUrl(s, push) {
    const p = new URLSearchParams();
    for (const f of FIELDS) if (s[f] || f === 'start' || f === 'end' || f === 'granularity') p.set(f, s[f]);
    const search = '?' + p.toString();
    if (search === location.search) return;
    const url = location.pathname + search;
    if (push) history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  }

  // ---------- charts ----------

  function makeCharts() {
    if (!HAS_CHART) return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    new Chart($('clicks-chart'), {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 16 } },
          y: { beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: {
          legend: {
            labels: {
              usePointStyle: true,
              boxWidth: 9,
              boxHeight: 9,
              generateLabels(chart) {
                const items = Chart.defaults.plugins.legend.labels.generateLabels(chart);
                if (chart.$provisionalCount) {
                  items.push({
                    text: `provisional window (is_final = false): ${chart.$provisionalCount}`,
                    pointStyle: 'triangle', fillStyle: COLORS.provisional, strokeStyle: COLORS.provisional,
                    lineWidth: 1, hidden: false, datasetIndex: null, provisional: true,
                  });
                }
                return items;
              },
            },
            onClick(e, item, legend) {
              if (item.provisional) return;
              Chart.defaults.plugins.legend.onClick.call(this, e, item, legend);
            },
          },
          tooltip: {
            callbacks: {
              footer(items) {
                const chart = items.length && items[0].chart;
                const i = items.length ? items[0].dataIndex : -1;
                return chart && chart.$provisional && chart.$provisional[i] ? 'provisional: not final yet' : '';
              },
            },
          },
        },
      },
    });
    for (const id of ['device-chart', 'country-chart']) {
      new Chart($(id), {
        type: 'bar',
        data: { labels: [], datasets: [{ label: 'clicks', data: [], backgroundColor: [] }] },
        options: {
          animation: false,
          maintainAspectRatio: false,
          indexAxis: 'y',
          scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { display: false } },
        },
      });
    }
  }

  /** The series of the clicks chart from the API's windows. */
  function clickSeries(body, s) {
    const g = body ? body.granularity : s.granularity;
    const byStart = new Map();
    for (const w of body ? body.windows : []) byStart.set(parseStamp(w.window_start), w);
    const filled = windowStarts(s.start, s.end, g);
    const starts = new Set(filled || []);
    for (const t of byStart.keys()) starts.add(t);
    const keys = [...starts].sort((a, b) => a - b);
    // Windows are final once they end before the watermark, so every window
    // from the first provisional one on is provisional too (empty ones included).
    let firstProvisional = Infinity;
    for (const [t, w] of byStart) if (w.is_final === false && t < firstProvisional) firstProvisional = t;
    const rows = keys.map((t) => ({ t, w: byStart.get(t) || null }));
    return {
      granularity: g,
      filled: filled !== null,
      labels: rows.map((r) => windowLabel(r.t, g)),
      provisional: rows.map((r) => (r.w ? r.w.is_final === false : r.t >= firstProvisional)),
      value: (f) => rows.map((r) => (r.w ? f(r.w) : 0)),
      empty: rows.map((r) => !r.w),
      windows: byStart.size,
    };
  }

  function lineDataset(label, data, color, series, extra) {
    const prov = series.provisional;
    const many = data.length > 200;
    return Object.assign({
      label,
      data,
      borderColor: color,
      backgroundColor: color,
      borderWidth: 2,
      tension: 0,
      pointStyle: prov.map((p) => (p ? 'triangle' : 'circle')),
      pointRadius: prov.map((p, i) => (p ? (series.empty[i] ? 3 : 6) : many ? 0 : 2.5)),
      pointHoverRadius: 6,
      pointBackgroundColor: prov.map((p) => (p ? COLORS.provisional : color)),
      pointBorderColor: prov.map((p) => (p ? COLORS.provisional : color)),
      segment: { borderDash: (ctx) => (prov[ctx.p1DataIndex] ? [6, 4] : undefined) },
    }, extra || {});
  }

  function sumBreakdown(windows, key) {
    const out = new Map();
    for (const w of windows) {
      const b = w[key];
      if (!b || typeof b !== 'object') continue;
      for (const [k, v] of Object.entries(b)) out.set(k, (out.get(k) || 0) + Number(v || 0));
    }
    return out;
  }

  function drawBreakdown(id, totals, selected) {
    const chart = HAS_CHART && Chart.getChart(id);
    const entries = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const top = entries.slice(0, 15);
    const sel = entries.find((e) => e[0] === selected);
    if (sel && !top.includes(sel)) top.push(sel);
    const rest = entries.filter((e) => !top.includes(e));
    if (rest.length) top.push([`other (${rest.length})`, rest.reduce((n, e) => n + e[1], 0)]);
    if (!chart) return;
    chart.data.labels = top.map((e) => (e[0] === '' ? '(empty)' : e[0]));
    chart.data.datasets[0].data = top.map((e) => e[1]);
    chart.data.datasets[0].backgroundColor = top.map((e) => (selected && e[0] === selected ? COLORS.selected : COLORS.bar));
    chart.update();
  }

  // ---------- the parts of the view ----------

  function selectAd(adId) {
    $('ad').value = adId;
    apply(true);
  }

  function renderTop(body, s) {
    const tbody = $('top-ads').tBodies[0];
    tbody.replaceChildren();
    $('top-range').textContent = `${s.start} – ${s.end}`;
    const ads = body ? body.ads : [];
    ads.forEach((a, i) => {
      const link = el('a', {
        href: '?' + qs(Object.assign({}, stateForLink(s), { ad: a.ad_id })),
        text: a.ad_id,
        onclick: (e) => { e.preventDefault(); selectAd(a.ad_id); },
      });
      const tr = el('tr', { 'data-ad': a.ad_id, class: a.ad_id === s.ad ? 'selected' : null },
        el('td', { class: 'num', text: String(i + 1) }),
        el('td', {}, link),
        el('td', { class: 'num', text: num(a.clicks) }),
        el('td', { class: 'num', text: num(a.conversions) }));
      tr.addEventListener('click', (e) => { if (e.target.tagName !== 'A') selectAd(a.ad_id); });
      tbody.append(tr);
    });
    if (body && !ads.length) {
      tbody.append(el('tr', {}, el('td', { colspan: '4', class: 'muted', text: 'no clicks in this range' })));
    }
  }

  function stateForLink(s) {
    const o = {};
    for (const f of FIELDS) if (s[f]) o[f] = s[f];
    return o;
  }

  function renderAd(body, s) {
    const chart = HAS_CHART && Chart.getChart('clicks-chart');
    const windows = body ? body.windows : [];
    const filters = [];
    if (s.device) filters.push(`device ${s.device}`);
    if (s.country) filters.push(`country ${s.country}`);
    $('ad-title').textContent = s.ad ? s.ad + (filters.length ? ` · ${filters.join(' · ')}` : '') : 'none selected';

    const series = clickSeries(body, s);
    const prov = series.provisional;
    const datasets = [];
    if (!s.device && !s.country) {
      datasets.push(lineDataset('clicks', series.value((w) => Number(w.clicks)), COLORS.clicks, series));
      datasets.push(lineDataset('unique users', series.value((w) => Number(w.unique_users)), COLORS.users, series));
      datasets.push(lineDataset('conversions', series.value((w) => Number(w.conversions)), COLORS.conversions, series,
        { hidden: true }));
    } else {
      if (s.device) {
        datasets.push(lineDataset(`clicks (device ${s.device})`,
          series.value((w) => Number((w.clicks_by_device || {})[s.device] || 0)), COLORS.clicks, series));
      }
      if (s.country) {
        datasets.push(lineDataset(`clicks (country ${s.country})`,
          series.value((w) => Number((w.clicks_by_country || {})[s.country] || 0)), COLORS.country, series));
      }
    }
    const provisionalWindows = windows.filter((w) => w.is_final === false).length;
    if (chart) {
      chart.data.labels = s.ad ? series.labels : [];
      chart.data.datasets = s.ad ? datasets : [];
      chart.$provisional = prov;
      chart.$provisionalCount = provisionalWindows;
      chart.$granularity = series.granularity;
      chart.update();
    }

    const notes = [];
    if (!s.ad) notes.push('Select an ad in the top-ads table or type its id in the filter bar');
    else if (body && !windows.length) notes.push(`No clicks for ad ${s.ad} in this range`);
    else if (body) {
      notes.push(`${num(windows.length)} ${series.granularity} windows with clicks` +
        (series.filled ? ', empty windows drawn as 0' : ''));
      if (provisionalWindows) {
        notes.push(`▲ dashed in red: ${provisionalWindows} provisional window(s) (is_final = false): within the ` +
          'allowed lateness of the newest event, they may still change');
      }
      if (s.device && s.country) notes.push('device and country are separate breakdowns, not a joint one');
      if (s.device || s.country) notes.push('unique users are not broken down by device or country');
    }
    $('clicks-note').textContent = notes.map((n) => n[0].toUpperCase() + n.slice(1) + '.').join(' ');

    const total = windows.reduce((n, w) => n + Number(w.clicks || 0), 0);
    const conv = windows.reduce((n, w) => n + Number(w.conversions || 0), 0);
    $('ad-summary').textContent = body ? `${num(total)} clicks · ${num(conv)} conversions in ${s.start} – ${s.end}` : '';

    const devices = sumBreakdown(windows, 'clicks_by_device');
    const countries = sumBreakdown(windows, 'clicks_by_country');
    drawBreakdown('device-chart', devices, s.device);
    drawBreakdown('country-chart', countries, s.country);
    const noCountry = [...countries.keys()].every((k) => k === '' || k === 'unknown');
    $('country-note').textContent = body && windows.length && noCountry ? 'these clicks carry no country' : '';
  }

  function renderUser(body, s) {
    const tbody = $('user-clicks').tBodies[0];
    tbody.replaceChildren();
    const clicks = body ? body.clicks : [];
    for (const c of clicks.slice(0, USER_ROWS)) {
      const ad = el('a', {
        href: '?' + qs(Object.assign({}, stateForLink(s), { ad: c.ad_id })),
        text: c.ad_id,
        onclick: (e) => { e.preventDefault(); selectAd(c.ad_id); },
      });
      tbody.append(el('tr', {},
        el('td', { text: timeText(c.event_time) }),
        el('td', {}, ad),
        el('td', { text: c.device ?? '' }),
        el('td', { text: c.os ?? '' }),
        el('td', { text: c.country ?? '' }),
        el('td', { text: c.campaign_id ?? '' }),
        el('td', { text: c.is_conversion ? 'yes' : '' }),
        el('td', { class: 'muted mono', text: c.event_id ?? '' })));
    }
    if (body && !clicks.length) {
      tbody.append(el('tr', {}, el('td', { colspan: '8', class: 'muted', text: 'no clicks by this user in the range' })));
    }
    $('user-summary').textContent = !s.user ? 'type a user id to list their clicks in the range'
      : body ? `${num(clicks.length)} clicks by ${s.user} in ${s.start} – ${s.end}` +
        (clicks.length > USER_ROWS ? ` (first ${USER_ROWS} shown)` : '') : '';
  }

  // ---------- render ----------

  let generation = 0;

  async function render() {
    const gen = ++generation;
    document.body.dataset.ready = '0';
    const s = readForm();
    clearErrors();
    setStatus('loading…');
    const current = () => gen === generation;
    const part = (label, promise, draw) => promise.then(
      (body) => { if (current()) draw(body); },
      (e) => { if (current()) { draw(null); showError(label, e); } },
    ).catch((e) => { if (current()) showError(label, e); });
    const range = { start: s.start, end: s.end };
    await Promise.all([
      part('top ads', api('/v1/ads/top?' + qs(Object.assign({}, range, { limit: TOP_LIMIT }))),
        (b) => renderTop(b, s)),
      part(`ad ${s.ad}`, s.ad
        ? api(`/v1/ads/${encodeURIComponent(s.ad)}/stats?` + qs(Object.assign({}, range, { granularity: s.granularity })))
        : Promise.resolve(null), (b) => renderAd(b, s)),
      part(`user ${s.user}`, s.user
        ? api(`/v1/users/${encodeURIComponent(s.user)}/clicks?` + qs(range))
        : Promise.resolve(null), (b) => renderUser(b, s)),
    ]);
    if (!current()) return;
    const failed = !$('errors').hidden;
    setStatus(failed ? 'some parts failed (see above)' : `updated ${new Date().toISOString().slice(11, 19)} UTC`);
    document.body.dataset.ready = '1';
  }

  function apply(push) {
    writeUrl(readForm(), push);
    return render();
  }

  // ---------- System: /metrics ----------

  /** Prometheus text -> [{name, labels, value}]. */
  function parseMetrics(text) {
    const out = [];
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const raw of text.split('\n')) {
      const l = raw.trim();
      if (!l || l.startsWith('#')) continue;
      const m = line.exec(l);
      if (!m) continue;
      const labels = {};
      if (m[2]) for (const lm of m[2].matchAll(label)) labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  }

  class Scrape {
    constructor(samples, at) { this.samples = samples; this.at = at; }
    has(name) { return this.samples.some((x) => x.name === name); }
    all(name) { return this.samples.filter((x) => x.name === name); }
    sum(name, where) {
      let n = 0; let seen = false;
      for (const x of this.samples) {
        if (x.name !== name) continue;
        if (where && !Object.entries(where).every(([k, v]) => x.labels[k] === v)) continue;
        n += x.value; seen = true;
      }
      return seen ? n : null;
    }
  }

  function rate(cur, prev, name, where) {
    if (!prev) return null;
    const a = cur.sum(name, where);
    const b = prev.sum(name, where);
    const dt = (cur.at - prev.at) / 1000;
    if (a === null || b === null || dt <= 0 || a < b) return null; // a restart resets counters
    return (a - b) / dt;
  }

  /** A quantile of a Prometheus histogram from its cumulative buckets (linear within a bucket). */
  function quantile(scrape, name, q) {
    const buckets = scrape.all(name + '_bucket')
      .map((x) => ({ le: x.labels.le === '+Inf' ? Infinity : Number(x.labels.le), n: x.value }))
      .sort((a, b) => a.le - b.le);
    if (!buckets.length) return null;
    const total = buckets[buckets.length - 1].n;
    if (!total) return null;
    const rank = q * total;
    let prevLe = 0; let prevN = 0;
    for (const b of buckets) {
      if (b.n >= rank) {
        if (b.le === Infinity) return prevLe;
        const inBucket = b.n - prevN;
        return prevLe + (inBucket ? (b.le - prevLe) * (rank - prevN) / inBucket : 0);
      }
      prevLe = b.le; prevN = b.n;
    }
    return prevLe;
  }

  function dl(id, rows) {
    const list = $(id);
    list.replaceChildren();
    for (const [k, v, cls] of rows) {
      list.append(el('dt', { text: k }), el('dd', { class: cls || null, text: v }));
    }
  }

  const perSec = (r, unit) => (r === null ? '— (next scrape)' : `${fixed(r, r < 10 ? 2 : 1)} ${unit}/s`);
  const fmtValue = (v) => (Number.isInteger(v) ? num(v) : Math.abs(v) < 1 ? v.toPrecision(3) : fixed(v, 2));
  const ms = (s) => (s === null || s === undefined ? '—' : `${fixed(s * 1000, 1)} ms`);

  function renderSystem(cur, prev) {
    // Ingest
    const accepted = cur.sum('clicklake_ingest_events_accepted_total');
    const requestsByPath = cur.all('clicklake_ingest_requests_total')
      .filter((x) => x.value > 0).map((x) => `${x.labels.path} ${num(x.value)}`).join(', ');
    const flushCount = cur.sum('clicklake_ingest_flush_duration_seconds_count');
    const flushSum = cur.sum('clicklake_ingest_flush_duration_seconds_sum');
    dl('sys-ingest', [
      ['events accepted', perSec(rate(cur, prev, 'clicklake_ingest_events_accepted_total'), 'events')],
      ['requests', perSec(rate(cur, prev, 'clicklake_ingest_requests_total'), 'req')],
      ['received', perSec(rate(cur, prev, 'clicklake_ingest_received_bytes_total'), 'bytes')],
      ['accepted total', num(accepted)],
      ['requests by path', requestsByPath || 'none'],
      ['buffered events', num(cur.sum('clicklake_ingest_buffered_events')),
        cur.sum('clicklake_ingest_buffered_events') > 0 ? 'warn' : null],
      ['flushes', `${num(flushCount)} (mean ${flushCount ? ms(flushSum / flushCount) : '—'})`],
      ['raw table version', num(cur.sum('clicklake_ingest_table_version'))],
      ['commit errors', num(cur.sum('clicklake_ingest_commit_errors_total')),
        cur.sum('clicklake_ingest_commit_errors_total') > 0 ? 'bad' : null],
    ]);

    // Rejections
    const rejected = cur.sum('clicklake_ingest_events_rejected_total');
    const rejRate = rate(cur, prev, 'clicklake_ingest_events_rejected_total');
    const accRate = rate(cur, prev, 'clicklake_ingest_events_accepted_total');
    const byField = cur.all('clicklake_ingest_events_rejected_total').filter((x) => x.value > 0)
      .sort((a, b) => b.value - a.value).map((x) => `${x.labels.field || '?'} ${num(x.value)}`).join(', ');
    const refusals = cur.sum('clicklake_ingest_backpressure_refusals_total');
    dl('sys-rejections', [
      ['rejected', perSec(rejRate, 'events')],
      ['share (last interval)', rejRate === null || accRate === null || rejRate + accRate === 0 ? '—'
        : `${fixed(100 * rejRate / (rejRate + accRate), 2)} %`, rejRate > 0 ? 'warn' : null],
      ['rejected total', num(rejected), rejected > 0 ? 'warn' : null],
      ['by field', byField || 'none'],
      ['backpressure refusals', num(refusals), refusals > 0 ? 'bad' : null],
    ]);

    // Compactor
    const tableVersion = cur.sum('clicklake_ingest_table_version');
    const rolled = cur.sum('clicklake_compactor_rolled_up_version');
    const lag = tableVersion === null || rolled === null ? null : Math.max(0, tableVersion - rolled);
    const watermark = cur.sum('clicklake_compactor_watermark_seconds');
    const rollupErrors = cur.sum('clicklake_compactor_rollup_errors_total');
    const late = cur.sum('clicklake_compactor_late_events_total');
    dl('sys-compactor', [
      ['rolled-up version', `${num(rolled)} of ${num(tableVersion)}`],
      ['lag', lag === null ? '—' : `${num(lag)} commit${lag === 1 ? '' : 's'} behind`, lag > 20 ? 'bad' : lag > 0 ? 'warn' : 'ok'],
      ['watermark', watermark ? `${timeText(watermark * 1000)} UTC` : 'none yet'],
      ['watermark age', watermark ? ago(cur.at / 1000 - watermark) : '—'],
      ['rollup runs', `${num(cur.sum('clicklake_compactor_rollup_runs_total'))} (${perSec(rate(cur, prev, 'clicklake_compactor_rollup_runs_total'), 'runs')})`],
      ['rollup errors', num(rollupErrors), rollupErrors > 0 ? 'bad' : null],
      ['late events', num(late)],
      ['housekeeping errors', num(cur.sum('clicklake_compactor_housekeeping_errors_total')),
        cur.sum('clicklake_compactor_housekeeping_errors_total') > 0 ? 'bad' : null],
      ...cur.all('clicklake_compactor_table_files').map((x) => [`files, ${x.labels.table}`, num(x.value)]),
    ]);

    // Queries
    const outcomes = cur.all('clicklake_query_statements_total').filter((x) => x.value > 0)
      .sort((a, b) => b.value - a.value).map((x) => `${x.labels.outcome} ${num(x.value)}`).join(', ');
    const qCount = cur.sum('clicklake_query_start_duration_seconds_count');
    const qSum = cur.sum('clicklake_query_start_duration_seconds_sum');
    let recentMean = null;
    if (prev) {
      const dc = qCount - prev.sum('clicklake_query_start_duration_seconds_count');
      const ds = qSum - prev.sum('clicklake_query_start_duration_seconds_sum');
      if (dc > 0) recentMean = ds / dc;
    }
    const errors = cur.sum('clicklake_query_statements_total', { outcome: 'error' });
    dl('sys-query', [
      ['statements', perSec(rate(cur, prev, 'clicklake_query_statements_total'), 'stmt')],
      ['by outcome', outcomes || 'none'],
      ['server errors', num(errors), errors > 0 ? 'bad' : null],
      ['running now', num(cur.sum('clicklake_query_running_statements'))],
      ['start latency mean', qCount ? ms(qSum / qCount) : '—'],
      ['start latency p50 / p99', qCount
        ? `${ms(quantile(cur, 'clicklake_query_start_duration_seconds', 0.5))} / ${ms(quantile(cur, 'clicklake_query_start_duration_seconds', 0.99))}` : '—'],
      ['mean, last interval', recentMean === null ? '—' : ms(recentMean)],
    ]);

    // Reconcile
    const rec = cur.all('clicklake_compactor_reconcile_differences');
    dl('sys-reconcile', rec.length
      ? rec.map((x) => [x.labels.level || 'all', `${num(x.value)} window${x.value === 1 ? '' : 's'} differ`, x.value > 0 ? 'bad' : 'ok'])
      : [['', 'none reported by this process']]);

    // Data-quality checks: every clicklake_quality_* and clicklake_compactor_quality_*
    // sample. Those with a `check` label are grouped per check: the `firing` one is its
    // state, the others (e.g. `value`) are shown with it.
    const quality = $('sys-quality');
    quality.replaceChildren();
    const checks = new Map();
    const loose = [];
    for (const x of cur.samples) {
      const m = /^clicklake_(?:compactor_)?quality_(.+)$/.exec(x.name);
      if (!m) continue;
      if (x.labels.check === undefined) { loose.push(x); continue; }
      if (!checks.has(x.labels.check)) checks.set(x.labels.check, { firing: null, values: [] });
      const c = checks.get(x.labels.check);
      if (m[1] === 'firing') c.firing = x.value;
      else c.values.push([m[1], x.value]);
    }
    for (const [name, c] of [...checks.entries()].sort((a, b) => (b[1].firing || 0) - (a[1].firing || 0) || (a[0] < b[0] ? -1 : 1))) {
      const state = c.firing === null ? 'reported' : c.firing > 0 ? 'firing' : 'ok';
      quality.append(el('li', { 'data-check': name, class: state },
        el('span', { class: 'mono', text: name }), ' ',
        el('strong', { class: 'state', text: state }),
        c.values.length ? el('span', { class: 'muted', text: ' ' + c.values.map(([k, v]) => `${k} ${fmtValue(v)}`).join(', ') }) : null));
    }
    for (const x of loose) {
      const labels = Object.entries(x.labels).map(([k, v]) => `${k}="${v}"`).join(', ');
      quality.append(el('li', {}, el('span', { class: 'mono', text: x.name + (labels ? `{${labels}}` : '') }),
        ' ', el('strong', { text: fmtValue(x.value) })));
    }
    if (!quality.children.length) quality.append(el('li', { class: 'muted', text: 'none reported' }));

    $('system-updated').textContent = `scraped ${new Date(cur.at).toISOString().slice(11, 19)} UTC`;
  }

  let lastScrape = null;

  async function scrape() {
    try {
      const r = await fetch('/metrics', { cache: 'no-store' });
      const text = await r.text();
      if (!r.ok) throw new ApiError('/metrics', r.status, text.trim() || r.statusText);
      const cur = new Scrape(parseMetrics(text), Date.now());
      renderSystem(cur, lastScrape);
      lastScrape = cur;
      $('system').classList.remove('failed');
    } catch (e) {
      $('system-updated').textContent = `scrape failed: ${e.status ? 'HTTP ' + e.status + ': ' : ''}${e.message}`;
      $('system').classList.add('failed');
    } finally {
      document.body.dataset.systemReady = '1';
      document.body.dataset.scrapes = String(Number(document.body.dataset.scrapes || 0) + 1);
      setTimeout(scrape, SCRAPE_MS);
    }
  }

  // ---------- wiring ----------

  function init() {
    if (!HAS_CHART) showError('charts', new Error('Chart.js did not load (/assets/chart.umd.min.js)'));
    makeCharts();
    $('token').value = getToken();
    showTokenState();
    writeForm(readUrl());
    writeUrl(readForm(), false);

    $('filters').addEventListener('submit', (e) => { e.preventDefault(); apply(true); });
    $('granularity').addEventListener('change', () => apply(true));
    $('user-form').addEventListener('submit', (e) => { e.preventDefault(); apply(true); });
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      setToken($('token').value.trim());
      showTokenState();
      render();
    });
    window.addEventListener('popstate', () => { writeForm(readUrl()); render(); });

    render();
    scrape();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
