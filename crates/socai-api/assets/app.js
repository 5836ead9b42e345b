/* socai operations-centre dashboard. Plain script, no build step (Chromium 148).
 * Reads: /v1/dashboard (config), /v1/dashboard/view, /v1/dashboard/series, /v1/metrics/stream (SSE),
 * /v1/witnesses and /v1/log (the witnesses panel), and for Verify
 * /v1/checkpoints/latest, /v1/witnesses and /v1/proofs/consistency (checked by verify.js).
 * Test hooks: window.socaiDashboard (state, refresh(), belowTargetCsv(), lastExport) and the
 * data-testid / data-* attributes documented in the report. */
(function () {
  'use strict';

  // The page's own record of JavaScript errors (tests read window.__socaiErrors).
  window.__socaiErrors = window.__socaiErrors || [];
  window.addEventListener('error', (e) => {
    window.__socaiErrors.push(String(e.message || e.error || 'error') + (e.filename ? ` (${e.filename}:${e.lineno})` : ''));
  });
  window.addEventListener('unhandledrejection', (e) => {
    window.__socaiErrors.push('unhandled rejection: ' + String(e.reason && e.reason.stack ? e.reason.stack : e.reason));
  });

  const I18N = window.socaiI18n;
  const V = window.socaiVerify;

  const WINDOWS = ['day', 'month', 'quarter', 'ytd'];
  const DEFAULT_METRICS = [
    'fully_online_rate', 'online_submission_rate', 'on_time_rate', 'online_payment_rate',
    'digital_signature_rate', 'digitization_rate', 'satisfaction_rate', 'score_766',
  ];
  const COUNT_METRICS = ['backlog', 'overdue'];
  const SCOPE_RE = /^(national|(province|agency|procedure):[A-Za-z0-9._-]+)$/;
  const WALL_ROWS = 8; // wall mode: best and worst rows shown

  const state = {
    cfg: null,
    lang: 'vi',
    scope: 'national',
    window: 'month',
    metric: null,
    wall: false,
    view: null,
    viewError: null,
    series: {},
    sort: { key: 'rank', dir: 'asc' },
    lastEventAt: Date.now(),
    lastEventTime: null,
    stale: false,
    workers: {},
    renders: 0,
    wallProvinces: [],
    wallIndex: 0,
    lastAnnounceAt: 0,
    verify: null,
    // The witnesses panel: {witnesses: [/v1/witnesses entries], latest: size of the latest
    // checkpoint or null, error: text or null}; null until first read.
    witnesses: null,
  };

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);
  const t = (key, params) => I18N.t(state.lang, key, params);
  const locale = () => I18N.strings[state.lang].locale;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'text') e.textContent = v;
        else if (k === 'className') e.className = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const nf = {};
  function numberFormat(opts) {
    const key = locale() + JSON.stringify(opts);
    if (!nf[key]) nf[key] = new Intl.NumberFormat(locale(), opts);
    return nf[key];
  }
  const fmtPct = (v) => numberFormat({ style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(v);
  const fmtDec1 = (v) => numberFormat({ minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(v);
  const fmtInt = (v) => numberFormat({ maximumFractionDigits: 0 }).format(v);
  const fmtNum = (v) => numberFormat({ maximumFractionDigits: 2 }).format(v);

  function parseDay(s) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || '');
    return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])) : null;
  }
  function fmtDate(s) {
    const d = parseDay(s);
    if (!d) return s || '';
    return new Intl.DateTimeFormat(locale(), { timeZone: 'UTC', day: '2-digit', month: '2-digit', year: 'numeric' }).format(d);
  }
  const fmtTime = (d) => new Intl.DateTimeFormat(locale(), { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(d);
  /** fmtTime, with the local date in front when it is not today. */
  const fmtWhen = (d) => (d.toDateString() === new Date().toDateString()
    ? fmtTime(d)
    : new Intl.DateTimeFormat(locale(), { day: '2-digit', month: '2-digit', year: 'numeric' }).format(d) + ' ' + fmtTime(d));

  /** A window id (`month.2026-06`) as words. */
  function windowName(id) {
    if (!id) return '';
    let m;
    if ((m = /^day\.(\d{4}-\d{2}-\d{2})$/.exec(id))) return t('window_day_id', { date: fmtDate(m[1]) });
    if ((m = /^month\.(\d{4})-(\d{2})$/.exec(id))) {
      const monthName = new Intl.DateTimeFormat(locale(), { timeZone: 'UTC', month: 'long' }).format(new Date(Date.UTC(+m[1], +m[2] - 1, 1)));
      return t('window_month_id', { month: m[2], year: m[1], monthName });
    }
    if ((m = /^quarter\.(\d{4})-Q([1-4])$/.exec(id))) return t('window_quarter_id', { q: m[2], year: m[1] });
    if ((m = /^ytd\.(\d{4})$/.exec(id))) return t('window_ytd_id', { year: m[1] });
    return id;
  }
  /** Short axis label of a window id. */
  function windowShort(id) {
    let m;
    if ((m = /^day\.(\d{4})-(\d{2})-(\d{2})$/.exec(id || ''))) return `${m[3]}/${m[2]}`;
    if ((m = /^month\.(\d{4})-(\d{2})$/.exec(id || ''))) return `${m[2]}/${m[1]}`;
    if ((m = /^quarter\.(\d{4})-Q([1-4])$/.exec(id || ''))) return (state.lang === 'en' ? `Q${m[2]} ` : `Q${m[2]}/`) + m[1];
    if ((m = /^ytd\.(\d{4})$/.exec(id || ''))) return m[1];
    return id || '';
  }

  const nameOf = (o) => (o ? (state.lang === 'en' && o.name_en ? o.name_en : o.name) || '' : '');
  const shortRoot = (root) => (root || '').slice(0, 12);

  function tileCfg(metric) {
    return (state.cfg && state.cfg.tiles || []).find((x) => x.metric === metric) || { metric, unit: metric === 'score_766' ? 'points' : 'rate' };
  }
  const tileMetrics = () => (state.cfg && state.cfg.tiles && state.cfg.tiles.length ? state.cfg.tiles.map((x) => x.metric) : DEFAULT_METRICS);
  const isPoints = (metric) => tileCfg(metric).unit === 'points';

  /** A value of a tile metric as text ("83,0%", "41,2"), or null for no data. */
  function fmtValue(metric, v) {
    if (v === null || v === undefined || Number.isNaN(v)) return null;
    if (COUNT_METRICS.includes(metric)) return fmtInt(v);
    return isPoints(metric) ? fmtDec1(v) : fmtPct(v);
  }

  function band(metric, v) {
    if (v === null || v === undefined) return 'none';
    const c = tileCfg(metric);
    if (typeof c.target !== 'number') return 'none';
    if (v >= c.target) return 'green';
    if (v >= (typeof c.amber === 'number' ? c.amber : c.target)) return 'amber';
    return 'red';
  }

  /** {text, dir, diff} for the change from previous to value. */
  function change(metric, value, previous) {
    if (value === null || value === undefined || previous === null || previous === undefined) {
      return { text: t('change_no_previous'), dir: 'none', diff: null };
    }
    const diff = value - previous;
    let shown;
    let unit;
    if (COUNT_METRICS.includes(metric)) { shown = Math.round(diff); unit = t('counts_unit'); }
    else if (isPoints(metric)) { shown = Math.round(diff * 10) / 10; unit = t('unit_points'); }
    else { shown = Math.round(diff * 1000) / 10; unit = t('unit_pp'); }
    const prevText = fmtValue(metric, previous);
    if (shown === 0) return { text: t('change_none', { previous: prevText }), dir: 'same', diff };
    const abs = COUNT_METRICS.includes(metric) ? fmtInt(Math.abs(shown)) : fmtDec1(Math.abs(shown));
    return {
      text: t('change_vs_previous', { arrow: shown > 0 ? '▲' : '▼', diff: abs, unit, previous: prevText }),
      dir: shown > 0 ? 'up' : 'down',
      diff,
      short: `${shown > 0 ? '▲' : '▼'} ${abs}`,
    };
  }

  function problemText(e) {
    return e && e.message ? e.message : String(e);
  }

  async function getJSON(url) {
    let res;
    try {
      res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    } catch (e) {
      const err = new Error(e.message || 'network error');
      err.network = true;
      throw err;
    }
    if (!res.ok) {
      let detail = `${res.status} ${res.statusText}`;
      try {
        const p = await res.json();
        detail = p.detail || p.title || detail;
      } catch (_) { /* not problem+json */ }
      const err = new Error(detail);
      err.status = res.status;
      throw err;
    }
    return res.json();
  }

  // Query values keep ':' readable (scope=province:H01).
  const q = (v) => encodeURIComponent(v).replace(/%3A/gi, ':');

  // ---------------------------------------------------------------- URL

  function readUrl() {
    const p = new URLSearchParams(location.search);
    const scope = p.get('scope');
    state.scope = scope && SCOPE_RE.test(scope) ? scope : 'national';
    // The agency a procedure view was reached from (the breadcrumb goes through it).
    const via = p.get('via');
    state.via = via && /^agency:/.test(via) && SCOPE_RE.test(via) && /^procedure:/.test(state.scope) ? via : null;
    const w = p.get('window');
    state.window = WINDOWS.includes(w) ? w : 'month';
    state.lang = p.get('lang') === 'en' ? 'en' : 'vi';
    state.wall = p.get('wall') === '1' || p.get('wall') === 'true';
    const m = p.get('metric');
    state.metric = m && tileMetrics().includes(m) ? m : tileMetrics()[0];
  }

  function urlFor(patch) {
    const s = Object.assign({ scope: state.scope, via: state.via, window: state.window, lang: state.lang, metric: state.metric, wall: state.wall }, patch || {});
    let qs = `?scope=${q(s.scope)}`;
    if (s.via && /^procedure:/.test(s.scope)) qs += `&via=${q(s.via)}`;
    qs += `&window=${q(s.window)}&lang=${q(s.lang)}`;
    if (s.metric && s.metric !== tileMetrics()[0]) qs += `&metric=${q(s.metric)}`;
    if (s.wall) qs += '&wall=1';
    return location.pathname + qs;
  }

  /** Changes view: pushes a history entry (or replaces it) and loads. */
  function navigate(patch, opts) {
    const o = opts || {};
    const url = urlFor(patch);
    Object.assign(state, patch);
    if (o.replace) history.replaceState(null, '', url);
    else if (url !== location.pathname + location.search) history.pushState(null, '', url);
    if (o.reload === false) { render(); return Promise.resolve(); }
    return load({ navigation: true });
  }

  // ---------------------------------------------------------------- loading

  let generation = 0;

  async function load(opts) {
    const o = opts || {};
    const my = ++generation;
    const main = $('main');
    if (o.navigation) main.dataset.status = 'loading';
    const scope = state.scope;
    const win = state.window;
    const metric = state.metric;
    try {
      const via = state.via && /^procedure:/.test(scope) ? `&via=${q(state.via)}` : '';
      const viewP = getJSON(`/v1/dashboard/view?scope=${q(scope)}${via}&window=${q(win)}`);
      // score_766 is reported for provinces and agencies only (Decision 766 scores those).
      const reported = (m) => m !== 'score_766' || /^(province|agency):/.test(scope);
      const seriesP = state.wall ? Promise.resolve([]) : Promise.all([metric, ...COUNT_METRICS].map((m) => (reported(m)
        ? getJSON(`/v1/dashboard/series?scope=${q(scope)}&metric=${q(m)}&kind=${q(win)}`).catch((e) => ({ error: problemText(e) }))
        : Promise.resolve({ points: [] }))));
      const [view, series] = await Promise.all([viewP, seriesP]);
      if (my !== generation) return;
      state.view = view;
      state.viewError = null;
      state.series = {};
      if (!state.wall) {
        state.series.main = Object.assign(series[0], { metric });
        state.series.backlog = Object.assign(series[1], { metric: 'backlog' });
        state.series.overdue = Object.assign(series[2], { metric: 'overdue' });
      }
      for (const w of view.workers || []) mergeWorker(w);
      render();
      main.dataset.status = 'ready';
      refreshWitnesses();
      if (o.navigation) announce(t('announce_view', { name: nameOf(view) }), true);
      else announce(t('announce_update', { name: nameOf(view), time: fmtTime(new Date()) }), false);
    } catch (e) {
      if (my !== generation) return;
      state.view = null;
      state.viewError = e;
      render();
      main.dataset.status = 'error';
    }
  }

  // Live refresh: ~300 ms after the first event of a burst, at most one refresh a second, never two at once.
  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;
  let lastRefreshAt = 0;
  function scheduleRefresh() {
    if (refreshTimer) return;
    const wait = Math.max(300, 1000 - (Date.now() - lastRefreshAt));
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      if (refreshing) { refreshAgain = true; return; }
      refreshing = true;
      lastRefreshAt = Date.now();
      try { await load({ navigation: false }); } finally {
        refreshing = false;
        if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
      }
    }, wait);
  }

  // ---------------------------------------------------------------- rendering

  function render() {
    state.renders++;
    document.documentElement.lang = state.lang;
    document.title = state.view ? `${nameOf(state.view)} — ${t('page_title')}` : t('page_title');
    renderStatic();
    renderHead();
    renderCrumbs();
    renderTiles();
    renderCharts();
    renderRanking();
    renderBelow();
    renderFooter();
    renderLive();
    const main = $('main');
    main.dataset.scope = state.scope;
    main.dataset.window = state.view && state.view.window ? state.view.window.id : '';
    main.dataset.windowKind = state.window;
    main.dataset.metric = state.metric;
    main.dataset.lang = state.lang;
    main.dataset.treeSize = state.view ? String(state.view.tree_size) : '';
    main.dataset.root = state.view ? state.view.root || '' : '';
    main.dataset.renders = String(state.renders);
  }

  function renderStatic() {
    for (const e of document.querySelectorAll('[data-i18n]')) {
      if (e.id === 'view-title' && state.view) continue;
      e.textContent = t(e.dataset.i18n);
    }
    for (const e of document.querySelectorAll('[data-i18n-aria]')) e.setAttribute('aria-label', t(e.dataset.i18nAria));
    const lt = document.querySelector('[data-testid="lang-toggle"]');
    if (lt) {
      lt.textContent = t('lang_toggle');
      lt.setAttribute('lang', t('lang_toggle_lang'));
      lt.setAttribute('aria-label', t('lang_toggle_label'));
    }
    for (const b of document.querySelectorAll('button[data-window]')) b.setAttribute('aria-pressed', String(b.dataset.window === state.window));
  }

  function renderHead() {
    const v = state.view;
    const title = $('view-title');
    const err = $('view-error');
    err.replaceChildren();
    err.hidden = true;
    if (!v) {
      title.textContent = state.viewError ? t('kind_' + state.scope.split(':')[0]) + (state.scope.includes(':') ? ' ' + state.scope.split(':')[1] : '') : t('loading');
      if (state.viewError) {
        const e = state.viewError;
        err.append(el('p', { text: e.status === 404 ? t('not_found', { scope: state.scope }) : t('load_error', { detail: problemText(e) }) }));
        if (!state.wall) {
          err.append(el('p', null,
            el('a', { href: urlFor({ scope: 'national' }), dataset: { scope: 'national' }, text: t('back_national') }), ' · ',
            el('button', { type: 'button', className: 'link-button', 'data-action': 'retry', text: t('retry') })));
        }
        err.hidden = false;
      }
      $('view-window').textContent = '';
      $('merged').hidden = true;
      $('procedure-note').hidden = true;
      return;
    }
    title.textContent = nameOf(v);
    title.dataset.kind = v.kind;
    const parts = [];
    const span = (w, key) => (w.id.startsWith('day.') || w.from === w.to
      ? (key === 'window_prev_text' ? t('window_prev_day', { window: windowName(w.id) }) : windowName(w.id))
      : t(key, { window: windowName(w.id), from: fmtDate(w.from), to: fmtDate(w.to) }));
    if (v.window) {
      parts.push(span(v.window, 'window_text'));
      if (v.previous) parts.push(span(v.previous, 'window_prev_text'));
    } else {
      parts.push(t('window_none'));
    }
    $('view-window').textContent = parts.join(' · ');
    const merged = v.merged || [];
    const m = $('merged');
    if (merged.length) {
      const list = merged.map((u) => (u.until ? t('merged_item', { name: nameOf(u), date: fmtDate(u.until) }) : nameOf(u))).join('; ');
      m.textContent = t('merged', { list });
      m.hidden = false;
    } else {
      m.textContent = '';
      m.hidden = true;
    }
    const pn = $('procedure-note');
    pn.hidden = v.kind !== 'procedure';
    pn.textContent = v.kind === 'procedure' ? t('procedure_note') : '';
    const wp = $('wall-position');
    if (state.wall && state.wallProvinces.length) {
      wp.textContent = t('wall_position', { i: state.wallIndex + 1, n: state.wallProvinces.length });
      wp.hidden = false;
    } else {
      wp.hidden = true;
    }
  }

  function renderCrumbs() {
    const ol = $('crumbs');
    const crumbs = state.view && state.view.breadcrumb && state.view.breadcrumb.length
      ? state.view.breadcrumb
      : [{ scope: 'national', name: 'Việt Nam', name_en: 'Viet Nam' }];
    const items = crumbs.map((c, i) => {
      const last = i === crumbs.length - 1;
      const label = nameOf(c);
      const node = state.wall
        ? el('span', { 'data-testid': `crumb-${i}`, 'aria-current': last ? 'page' : null, text: label })
        : el('a', { href: urlFor({ scope: c.scope }), 'data-testid': `crumb-${i}`, dataset: { scope: c.scope }, 'aria-current': last ? 'page' : null, text: label });
      return el('li', null, node);
    });
    ol.replaceChildren(...items);
  }

  // Tiles: built once (skeletons), then updated in place so focus and open <details> survive.
  const tileEls = {};

  function buildTiles() {
    const tiles = $('tiles');
    const counts = $('counts');
    tiles.replaceChildren();
    counts.replaceChildren();
    for (const metric of [...tileMetrics(), ...COUNT_METRICS]) {
      const isCount = COUNT_METRICS.includes(metric);
      const art = el('article', { className: 'tile' + (isCount ? ' tile-count' : ''), 'data-testid': `tile-${metric}`, dataset: { metric }, 'aria-labelledby': `tile-h-${metric}` });
      const h = el('h3', { id: `tile-h-${metric}`, className: 'tile-name' });
      let select = null;
      if (!isCount && !state.wall) {
        select = el('button', { type: 'button', className: 'tile-select', 'data-testid': `select-${metric}`, dataset: { metric }, 'aria-pressed': 'false' });
        h.append(select);
      }
      const value = el('p', { className: 'tile-value' });
      const valueSpan = el('span', { className: 'value', 'data-testid': `value-${metric}`, 'data-value': '' });
      const unit = el('span', { className: 'value-unit' });
      value.append(valueSpan, unit);
      const target = el('p', { className: 'tile-target' });
      const badge = el('p', { className: 'tile-band' }, el('span', { className: 'badge', 'data-testid': `band-${metric}` }));
      const chg = el('p', { className: 'tile-change', 'data-testid': `change-${metric}`, 'data-change': '' });
      const frac = el('p', { className: 'tile-fraction' });
      const prov = el('p', { className: 'tile-provenance' });
      art.append(h, value);
      if (!isCount) art.append(target, badge);
      art.append(chg, frac);
      let details = null;
      if (metric === 'score_766' && !state.wall) {
        details = el('details', { className: 'score-details', 'data-testid': 'score-details' }, el('summary'), el('div', { className: 'score-body' }));
        art.append(details);
      }
      art.append(prov);
      (isCount ? counts : tiles).append(art);
      tileEls[metric] = { art, h, select, valueSpan, unit, target, badge: badge.firstChild, chg, frac, prov, details };
    }
  }

  function renderTiles() {
    const v = state.view;
    const byMetric = {};
    for (const tile of (v && v.tiles) || []) byMetric[tile.metric] = tile;
    for (const metric of [...tileMetrics(), ...COUNT_METRICS]) {
      const e = tileEls[metric];
      if (!e) continue;
      const isCount = COUNT_METRICS.includes(metric);
      const tile = isCount ? (v && v[metric]) || {} : byMetric[metric] || {};
      const value = tile.value === undefined ? null : tile.value;
      const previous = tile.previous === undefined ? null : tile.previous;
      const label = t('metric_' + metric);
      if (e.select) {
        e.select.textContent = label;
        e.select.setAttribute('aria-pressed', String(metric === state.metric));
        e.select.setAttribute('aria-label', t('select_tile', { metric: label }));
        e.select.setAttribute('aria-controls', 'chart-main');
      } else {
        e.h.textContent = label;
      }
      e.art.classList.toggle('selected', metric === state.metric && !state.wall);
      const text = fmtValue(metric, value);
      // Decision 766 scores provinces and agencies: elsewhere the score is not computed at all.
      const unscored = metric === 'score_766' && !/^(province|agency):/.test(state.scope);
      e.valueSpan.textContent = text === null ? t(unscored ? 'score_not_here' : 'no_data') : text;
      e.valueSpan.dataset.value = value === null ? '' : String(value);
      e.valueSpan.classList.toggle('no-data', text === null);
      e.unit.textContent = metric === 'score_766' && text !== null ? ' ' + t('points_of_100') : '';
      if (!isCount) {
        const c = tileCfg(metric);
        const b = band(metric, value);
        e.art.dataset.band = b;
        for (const x of ['green', 'amber', 'red', 'none']) e.art.classList.toggle('band-' + x, x === b);
        e.target.textContent = typeof c.target === 'number'
          ? (isPoints(metric) ? t('target_points', { target: fmtDec1(c.target) }) : t('target_rate', { target: fmtPct(c.target) }))
          : '';
        e.badge.textContent = t('band_' + b);
        e.badge.setAttribute('aria-label', t('band_label', { band: t('band_' + b) }));
        e.badge.dataset.band = b;
      }
      const ch = change(metric, value, previous);
      e.chg.textContent = ch.text;
      e.chg.dataset.change = ch.diff === null ? '' : String(ch.diff);
      e.chg.dataset.dir = ch.dir;
      const good = ch.dir === 'same' || ch.dir === 'none' ? 'neutral' : ((ch.dir === 'up') !== isCount ? 'good' : 'bad');
      e.chg.className = 'tile-change change-' + good;
      // numerator / denominator
      if (!isCount && !isPoints(metric) && tile.denominator !== null && tile.denominator !== undefined && tile.numerator !== undefined) {
        e.frac.textContent = t('fraction', { num: fmtInt(tile.numerator), den: fmtInt(tile.denominator) });
      } else if (metric === 'score_766' && tile.detail) {
        e.frac.textContent = t('score_fraction', { points: fmtDec1(tile.detail.points), max: fmtNum(tile.detail.max_points) });
      } else {
        e.frac.textContent = '';
      }
      // provenance: the tile's own tree size (counts: the view's)
      const size = isCount ? v && v.tree_size : tile.tree_size;
      const root = isCount ? v && v.root : tile.root;
      if (size !== undefined && size !== null && root) {
        e.art.title = t('computed_at_title', { size: fmtInt(size), root });
        e.prov.textContent = t('tile_provenance', { size: fmtInt(size), root: shortRoot(root) });
        e.art.dataset.treeSize = String(size);
        e.art.dataset.root = root;
      } else {
        e.art.removeAttribute('title');
        e.prov.textContent = '';
        e.art.dataset.treeSize = '';
        e.art.dataset.root = '';
      }
      if (e.details) renderScoreDetails(e.details, tile);
    }
  }

  function renderScoreDetails(details, tile) {
    details.querySelector('summary').textContent = t('score_details');
    const body = details.querySelector('.score-body');
    const cfg = state.cfg && state.cfg.score_766;
    const covered = {};
    for (const ind of (tile.detail && tile.detail.indicators) || []) covered[ind.indicator] = ind;
    const out = [];
    if (!cfg || !cfg.groups || !cfg.groups.length) {
      out.push(el('p', { text: t('score_no_config') }));
    } else {
      const groups = el('ol', { className: 'score-groups', 'data-testid': 'score-groups' });
      for (const g of cfg.groups) {
        const gname = state.lang === 'en' ? g.name_en || g.name_vi : g.name_vi;
        const inds = g.indicators || [];
        const have = inds.filter((i) => covered[i.id]);
        const earned = have.reduce((a, i) => a + (covered[i.id].earned || 0), 0);
        const head = have.length
          ? t('score_group', { name: gname, earned: fmtDec1(earned), points: fmtNum(g.points) })
          : t('score_group_uncovered', { name: gname, points: fmtNum(g.points) });
        const list = el('ul', { className: 'score-indicators' });
        for (const i of inds) {
          const iname = state.lang === 'en' ? i.name_en || i.name_vi : i.name_vi;
          const c = covered[i.id];
          const li = c
            ? el('li', { 'data-indicator': i.id, 'data-covered': 'true', 'data-earned': String(c.earned),
              text: t('score_indicator', { id: i.id, name: iname, earned: fmtDec1(c.earned), points: fmtNum(c.points !== undefined ? c.points : i.points), rate: fmtPct(c.rate), threshold: fmtPct(c.threshold !== undefined ? c.threshold : i.threshold) }) })
            : i.metric
              ? el('li', { 'data-indicator': i.id, 'data-covered': 'no-data',
                text: t('score_indicator_nodata', { id: i.id, name: iname, points: fmtNum(i.points) }) })
              : el('li', { className: 'uncovered', 'data-indicator': i.id, 'data-covered': 'false',
                text: t('score_indicator_uncovered', { id: i.id, name: iname, points: fmtNum(i.points) })
                  + (i.not_covered && state.lang === 'en' ? ` (${i.not_covered})` : '') });
          if (i.source) li.title = t('score_source', { source: i.source }) + (i.not_covered ? ` — ${i.not_covered}` : '');
          list.append(li);
        }
        groups.append(el('li', { 'data-group': g.id, 'data-points': String(g.points) }, el('strong', { text: head }), list));
      }
      out.push(groups);
    }
    body.replaceChildren(...out);
  }

  // ---------------------------------------------------------------- charts

  const charts = {};

  function seriesTitle(metric) {
    return t('trend_caption', { metric: t('metric_' + metric), kind: t('kind_' + state.window) });
  }

  function renderCharts() {
    const section = $('trend-section');
    if (!section) return;
    if (state.wall) { section.hidden = true; return; }
    section.hidden = false;
    renderChart('main', $('chart-main'), state.series.main);
    renderChart('backlog', $('chart-backlog'), state.series.backlog);
    renderChart('overdue', $('chart-overdue'), state.series.overdue);
  }

  function renderChart(key, fig, series) {
    const metric = series ? series.metric : (key === 'main' ? state.metric : key);
    const title = seriesTitle(metric);
    const points = series && Array.isArray(series.points) ? series.points : [];
    const isCount = COUNT_METRICS.includes(metric);
    const cfg = tileCfg(metric);
    const target = !isCount && typeof cfg.target === 'number' ? cfg.target : null;
    const scale = !isCount && !isPoints(metric) ? 100 : 1; // rates plotted in percent
    const fmtV = (v) => (v === null || v === undefined ? t('no_data') : fmtValue(metric, v));

    // skeleton: caption, chart box (hidden from AT), readout, summary (text alternative), data table
    let parts = fig._parts;
    if (!parts) {
      const capId = `${fig.id}-caption`;
      const sumId = `${fig.id}-summary`;
      parts = {
        cap: el('figcaption', { id: capId, className: 'chart-caption' }),
        box: el('div', { className: 'chart-box', 'aria-hidden': 'true' }),
        readout: el('p', { className: 'chart-readout', 'aria-hidden': 'true' }),
        summary: el('p', { id: sumId, className: 'chart-summary', 'data-testid': `${fig.dataset.testid}-summary` }),
        table: el('table', { 'data-testid': `${fig.dataset.testid}-table` }),
      };
      // visually hidden data table (a wrapper: a table itself ignores the 1px box)
      parts.tableWrap = el('div', { className: 'sr-only' }, parts.table);
      fig.setAttribute('aria-labelledby', capId);
      fig.setAttribute('aria-describedby', sumId);
      fig.append(parts.cap, parts.box, parts.readout, parts.summary, parts.tableWrap);
      fig._parts = parts;
    }
    parts.cap.textContent = title;
    fig.dataset.metric = metric;
    fig.dataset.kind = state.window;
    fig.dataset.points = String(points.length);

    // text alternative
    const vals = points.map((p) => p.value).filter((v) => v !== null && v !== undefined);
    let summary;
    if (series && series.error) summary = t('chart_error', { detail: series.error });
    else if (!vals.length) summary = t('chart_empty');
    else {
      const last = [...points].reverse().find((p) => p.value !== null && p.value !== undefined);
      summary = t('chart_summary', {
        n: fmtInt(points.length), first: windowName(points[0].window), last: windowName(points[points.length - 1].window),
        latest: `${fmtV(last.value)} (${windowName(last.window)})`, min: fmtV(Math.min(...vals)), max: fmtV(Math.max(...vals)),
      }) + (target !== null ? t('chart_summary_target', { target: fmtV(target) }) : '');
    }
    parts.summary.textContent = summary;
    fig.setAttribute('aria-label', `${title}. ${summary}`);
    const rows = points.map((p) => el('tr', null, el('th', { scope: 'row', text: windowName(p.window) }), el('td', { text: fmtV(p.value), 'data-value': p.value === null ? '' : String(p.value) }), el('td', { text: p.tree_size === undefined ? '' : fmtInt(p.tree_size) })));
    parts.table.replaceChildren(
      el('caption', { text: t('chart_table_caption', { title }) }),
      el('thead', null, el('tr', null, el('th', { scope: 'col', text: t('col_period') }), el('th', { scope: 'col', text: t('col_value') }), el('th', { scope: 'col', text: t('col_tree_size') }))),
      el('tbody', null, ...rows));

    // the chart itself (uPlot)
    const xs = points.map((_, i) => i);
    const ys = points.map((p) => (p.value === null || p.value === undefined ? null : p.value * scale));
    const data = target !== null ? [xs, ys, xs.map(() => target * scale)] : [xs, ys];
    const labels = points.map((p) => windowShort(p.window));
    const sig = [metric, state.window, state.lang, target, points.length ? 1 : 0].join('|');
    const existing = charts[key];
    if (!points.length || typeof uPlot === 'undefined') {
      if (existing) { existing.u.destroy(); delete charts[key]; }
      parts.box.replaceChildren();
      parts.readout.textContent = '';
      return;
    }
    if (existing && existing.sig === sig) {
      existing.labels = labels;
      existing.points = points;
      existing.u.setData(data);
      return;
    }
    if (existing) { existing.u.destroy(); delete charts[key]; }
    parts.box.replaceChildren();
    const holder = { sig, labels, points };
    const yFmt = (v) => (scale === 100 ? numberFormat({ maximumFractionDigits: 0 }).format(v) + '%' : numberFormat({ maximumFractionDigits: 1 }).format(v));
    const opts = {
      width: Math.max(280, parts.box.clientWidth || 600),
      height: key === 'main' ? 260 : 180,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 8 } },
      scales: {
        x: { time: false, range: (u, min, max) => [Math.min(min, max - 1) - 0.5, max + 0.5] },
        y: { range: (u, min, max) => (scale === 100 || isPoints(metric) ? [0, 100] : [0, Math.max(1, (max || 0) * 1.15)]) },
      },
      axes: [
        {
          stroke: '#2d333b', grid: { stroke: '#e3e6ea' }, ticks: { stroke: '#c4c9d0' },
          incrs: [1, 2, 3, 5, 7, 10, 15, 30, 60, 90],
          values: (u, splits) => splits.map((i) => (Number.isInteger(i) && holder.labels[i] !== undefined ? holder.labels[i] : '')),
        },
        { stroke: '#2d333b', grid: { stroke: '#e3e6ea' }, ticks: { stroke: '#c4c9d0' }, size: 56, values: (u, splits) => splits.map(yFmt) },
      ],
      series: [
        {},
        { label: t('metric_' + metric), stroke: '#0b5cad', width: 2, fill: 'rgba(11, 92, 173, 0.08)', spanGaps: false, points: { show: points.length <= 40, size: 6, fill: '#0b5cad' } },
      ],
      hooks: {
        setCursor: [(u) => {
          const i = u.cursor.idx;
          if (i === null || i === undefined || !holder.points[i]) { parts.readout.textContent = ''; return; }
          const p = holder.points[i];
          parts.readout.textContent = `${windowName(p.window)}: ${fmtV(p.value)}`;
        }],
      },
    };
    if (target !== null) opts.series.push({ label: t('series_target'), stroke: '#a4161a', width: 1.5, dash: [6, 4], points: { show: false } });
    holder.u = new uPlot(opts, data, parts.box);
    charts[key] = holder;
  }

  function resizeCharts() {
    for (const key of Object.keys(charts)) {
      const c = charts[key];
      const box = c.u.root.parentElement;
      if (box && box.clientWidth) c.u.setSize({ width: Math.max(280, box.clientWidth), height: c.u.height });
    }
  }

  // ---------------------------------------------------------------- ranking

  function rowValue(row, metric) {
    const x = row.values && row.values[metric];
    return x && x.value !== undefined ? x.value : null;
  }
  function rowPrevious(row, metric) {
    const x = row.values && row.values[metric];
    return x && x.previous !== undefined ? x.previous : null;
  }

  /** Ranks by the selected metric, best first (ties share a rank; no data: no rank). */
  function ranks(rows, metric) {
    const withValue = rows.filter((r) => rowValue(r, metric) !== null).sort((a, b) => rowValue(b, metric) - rowValue(a, metric));
    const out = new Map();
    let prev = null;
    let rank = 0;
    withValue.forEach((r, i) => {
      const v = rowValue(r, metric);
      if (v !== prev) { rank = i + 1; prev = v; }
      out.set(r.scope, rank);
    });
    return out;
  }

  function sortRows(rows, rankMap) {
    const { key, dir } = state.sort;
    const sign = dir === 'asc' ? 1 : -1;
    const metric = state.metric;
    const keyOf = (r) => {
      if (key === 'name') return nameOf(r);
      if (key === 'rank') return rankMap.has(r.scope) ? rankMap.get(r.scope) : null;
      if (key === 'change') {
        const v = rowValue(r, metric);
        const p = rowPrevious(r, metric);
        return v === null || p === null ? null : v - p;
      }
      if (key === 'value') return rowValue(r, metric);
      if (key.startsWith('m:')) return rowValue(r, key.slice(2));
      return null;
    };
    const collator = new Intl.Collator(locale());
    return rows.map((r, i) => ({ r, k: keyOf(r), i })).sort((a, b) => {
      if (a.k === null && b.k === null) return a.i - b.i;
      if (a.k === null) return 1; // no data last, whatever the direction
      if (b.k === null) return -1;
      const c = typeof a.k === 'string' ? collator.compare(a.k, b.k) : a.k - b.k;
      return c !== 0 ? sign * c : a.i - b.i;
    }).map((x) => x.r);
  }

  function columns() {
    const metric = state.metric;
    const cols = [
      { key: 'rank', label: t('col_rank'), num: true },
      { key: 'name', label: t('col_unit') },
      { key: 'value', label: t('short_' + metric), title: t('metric_' + metric), num: true },
      { key: 'change', label: t(isPoints(metric) ? 'col_change_points' : 'col_change_pp'), num: true },
      { key: 'status', label: t('col_status'), sortable: false },
    ];
    for (const m of tileMetrics()) {
      if (m !== metric) cols.push({ key: 'm:' + m, label: t('short_' + m), title: t('metric_' + m), num: true, extra: true });
    }
    return cols;
  }

  function renderRanking() {
    const section = $('ranking-section');
    const table = $('ranking');
    const v = state.view;
    const children = v && v.children ? v.children : { kind: null, rows: [] };
    const kind = children.kind;
    $('ranking-heading').textContent = t('ranking_heading_' + (kind || 'none'));
    const note = $('ranking-note');
    note.hidden = kind !== 'procedure';
    note.textContent = kind === 'procedure' ? t('ranking_procedure_note') : '';
    section.dataset.kind = kind || '';
    const winText = v && v.window ? windowName(v.window.id) : t('window_' + state.window);
    $('ranking-caption').textContent = !v ? '' : !kind ? t('ranking_none')
      : t(state.wall ? 'ranking_caption_wall' : 'ranking_caption', { metric: t('metric_' + state.metric), window: winText });

    // header (focus on a sort button survives the rebuild)
    const active = document.activeElement;
    const focusSort = active && active.dataset && active.dataset.sort && table.contains(active) ? active.dataset.sort : null;
    const focusScope = active && active.dataset && active.dataset.scope && table.contains(active) ? active.dataset.scope : null;
    const cols = columns();
    const headRow = el('tr');
    for (const c of cols) {
      const sorted = state.sort.key === c.key;
      const th = el('th', { scope: 'col', className: (c.num ? 'num' : '') + (c.extra ? ' col-extra' : ''), title: c.title || null });
      if (c.sortable !== false) th.setAttribute('aria-sort', sorted ? (state.sort.dir === 'asc' ? 'ascending' : 'descending') : 'none');
      if (c.sortable === false || state.wall) {
        th.textContent = c.label;
      } else {
        const arrow = sorted ? (state.sort.dir === 'asc' ? ' ▲' : ' ▼') : '';
        th.append(el('button', { type: 'button', className: 'sort', 'data-sort': c.key, 'data-testid': `sort-${c.key.replace(':', '-')}`, 'aria-label': t('sort_by', { col: c.title || c.label }) }, c.label, el('span', { className: 'sort-arrow', 'aria-hidden': 'true', text: arrow })));
      }
      headRow.append(th);
    }
    table.tHead.replaceChildren(headRow);

    const rows = children.rows || [];
    const rankMap = ranks(rows, state.metric);
    let sorted = sortRows(rows, rankMap);
    const body = [];
    const mkRow = (r) => {
      const val = rowValue(r, state.metric);
      const prev = rowPrevious(r, state.metric);
      const ch = change(state.metric, val, prev);
      const b = band(state.metric, val);
      const name = nameOf(r);
      const cells = [
        el('td', { className: 'num', 'data-col': 'rank', text: rankMap.has(r.scope) ? fmtInt(rankMap.get(r.scope)) : '—' }),
        el('th', { scope: 'row', 'data-col': 'name' }, state.wall ? el('span', { text: name }) : el('a', { href: urlFor({ scope: r.scope }), dataset: { scope: r.scope }, text: name })),
        valueCell(state.metric, val, 'value'),
        el('td', { className: 'num change change-' + (ch.dir === 'up' || ch.dir === 'down' ? (ch.dir === 'up' ? 'good' : 'bad') : 'neutral'), 'data-col': 'change', 'data-change': ch.diff === null ? '' : String(ch.diff), title: ch.text }, ch.short || (ch.dir === 'same' ? '=' : '—')),
        el('td', { 'data-col': 'status' }, el('span', { className: 'badge small', dataset: { band: b }, text: t('band_' + b) })),
      ];
      for (const c of cols) if (c.extra) cells.push(valueCell(c.key.slice(2), rowValue(r, c.key.slice(2)), c.key, true));
      return el('tr', { 'data-scope': r.scope, dataset: { band: b } }, ...cells);
    };
    if (!kind) {
      table.hidden = true;
    } else {
      table.hidden = false;
      if (!rows.length) {
        body.push(el('tr', null, el('td', { colspan: String(cols.length), text: t('ranking_empty') })));
      } else if (state.wall && sorted.length > 2 * WALL_ROWS + 1) {
        // wall: the best and the worst, by the selected metric
        sorted = sortRows(rows, rankMap);
        const top = sorted.slice(0, WALL_ROWS);
        const withValues = sorted.filter((r) => rowValue(r, state.metric) !== null);
        const bottom = withValues.slice(Math.max(WALL_ROWS, withValues.length - WALL_ROWS));
        body.push(...top.map(mkRow));
        const hidden = rows.length - top.length - bottom.length;
        if (hidden > 0) body.push(el('tr', { className: 'more' }, el('td', { colspan: String(cols.length), text: t('ranking_more', { n: fmtInt(hidden) }) })));
        body.push(...bottom.map(mkRow));
      } else {
        body.push(...sorted.map(mkRow));
      }
    }
    table.tBodies[0].replaceChildren(...body);
    table.dataset.rows = String(rows.length);
    table.dataset.sortKey = state.sort.key;
    table.dataset.sortDir = state.sort.dir;
    if (focusSort) { const b = table.querySelector(`button[data-sort="${CSS.escape(focusSort)}"]`); if (b) b.focus(); }
    if (focusScope) { const a = table.querySelector(`a[data-scope="${CSS.escape(focusScope)}"]`); if (a) a.focus(); }
  }

  function valueCell(metric, v, col, extra) {
    const text = fmtValue(metric, v);
    const td = el('td', { className: 'num' + (extra ? ' col-extra' : ''), 'data-col': col, 'data-value': v === null ? '' : String(v) });
    if (text === null) td.append(el('span', { 'aria-hidden': 'true', text: '—' }), el('span', { className: 'sr-only', text: t('no_data') }));
    else td.textContent = text;
    td.title = text === null ? t('no_data') : t('metric_' + metric);
    return td;
  }

  // ---------------------------------------------------------------- below target + CSV

  function belowTarget() {
    const v = state.view;
    const metric = state.metric;
    const c = tileCfg(metric);
    if (!v || !v.children || typeof c.target !== 'number') return [];
    return (v.children.rows || [])
      .filter((r) => { const x = rowValue(r, metric); return x !== null && x < c.target; })
      .sort((a, b) => rowValue(a, metric) - rowValue(b, metric));
  }

  function gapText(metric, v, target) {
    return isPoints(metric) ? `${fmtDec1(target - v)} ${t('unit_points')}` : `${fmtDec1(Math.round((target - v) * 1000) / 10)} ${t('unit_pp')}`;
  }

  function renderBelow() {
    const section = $('below-section');
    if (!section) return;
    if (state.wall) { section.hidden = true; return; }
    const v = state.view;
    section.hidden = !v || !v.children || !v.children.kind;
    const metric = state.metric;
    const c = tileCfg(metric);
    $('below-heading').textContent = t('below_heading', { metric: t('metric_' + metric) });
    const list = belowTarget();
    const items = list.map((r) => {
      const val = rowValue(r, metric);
      return el('li', { 'data-scope': r.scope, 'data-value': String(val) },
        el('a', { href: urlFor({ scope: r.scope }), dataset: { scope: r.scope }, text: nameOf(r) }),
        ': ', t('below_item', { value: fmtValue(metric, val), target: fmtValue(metric, c.target), gap: gapText(metric, val, c.target) }));
    });
    $('below-target').replaceChildren(...items);
    $('below-target').dataset.count = String(list.length);
    $('below-summary').textContent = list.length ? t('below_count', { n: fmtInt(list.length) }) : t('below_none');
  }

  function csvField(x) {
    let s = x === null || x === undefined ? '' : String(x);
    if (/^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s)) s = "'" + s; // no formulas from unit names
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  /** The below-target list as CSV (UTF-8 with BOM, comma-separated, '.' decimals) and its file name. */
  function belowTargetCsv() {
    const v = state.view;
    const metric = state.metric;
    const c = tileCfg(metric);
    const pct = (x) => (x === null || x === undefined ? '' : isPoints(metric) ? (Math.round(x * 10) / 10).toFixed(1) : (Math.round(x * 1000) / 10).toFixed(1));
    const header = ['csv_scope', 'csv_name', 'csv_metric', 'csv_window', 'csv_value', 'csv_target', 'csv_previous', 'csv_change', 'csv_gap', 'csv_tree_size', 'csv_root']
      .map((k) => (isPoints(metric) ? t(k).replace('(%)', '').replace('(điểm %)', '(điểm)').replace('(pp)', '(points)').trim() : t(k)));
    const lines = [header.map(csvField).join(',')];
    for (const r of belowTarget()) {
      const val = rowValue(r, metric);
      const prev = rowPrevious(r, metric);
      const diff = prev === null ? '' : isPoints(metric) ? (Math.round((val - prev) * 10) / 10).toFixed(1) : (Math.round((val - prev) * 1000) / 10).toFixed(1);
      lines.push([
        r.scope, nameOf(r), metric, v && v.window ? v.window.id : state.window, pct(val), pct(c.target), pct(prev), diff,
        pct(c.target - val), v ? v.tree_size : '', v ? v.root : '',
      ].map(csvField).join(','));
    }
    const safeScope = state.scope.replace(/[^A-Za-z0-9._-]/g, '_');
    return { filename: `below-target-${safeScope}-${state.window}.csv`, text: '\uFEFF' + lines.join('\r\n') + '\r\n' };
  }

  function exportCsv() {
    const { filename, text } = belowTargetCsv();
    const blob = new Blob([text], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: filename, className: 'sr-only' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    api.lastExport = { filename, text, at: new Date().toISOString() };
    const b = document.querySelector('[data-testid="export-csv"]');
    if (b) b.dataset.filename = filename;
  }

  // ---------------------------------------------------------------- footer, live status

  function renderFooter() {
    const v = state.view;
    const p = $('provenance');
    if (v && v.tree_size && v.root) {
      p.replaceChildren(t('provenance', { size: fmtInt(v.tree_size), root: shortRoot(v.root) }));
      p.title = t('computed_at_title', { size: fmtInt(v.tree_size), root: v.root });
    } else {
      p.textContent = v ? t('provenance_none') : '';
      p.removeAttribute('title');
    }
    p.dataset.treeSize = v ? String(v.tree_size) : '';
    p.dataset.root = v ? v.root || '' : '';
    renderWorkers();
    renderWitnesses();
  }

  // ---------------------------------------------------------------- witnesses

  // What the server says of its witnesses (/v1/witnesses) against its latest checkpoint: status
  // shown as reported, nothing verified here (Verify checks the cosignatures themselves). Read
  // with every view read (the page's live refresh) and every WITNESS_POLL_MS besides, so a
  // failing witness shows on an idle page too.
  const WITNESS_POLL_MS = 5000;
  let witnessesReading = false;
  async function refreshWitnesses() {
    if (witnessesReading) return;
    witnessesReading = true;
    try {
      // /v1/log's checkpoint_size: the latest signed checkpoint's size (0 before the first),
      // without the 404 /v1/checkpoints/latest answers then.
      const [list, log] = await Promise.all([getJSON('/v1/witnesses'), getJSON('/v1/log')]);
      state.witnesses = { witnesses: list.witnesses || [], latest: log.checkpoint_size > 0 ? log.checkpoint_size : null, error: null };
    } catch (e) {
      state.witnesses = Object.assign({}, state.witnesses || { witnesses: [], latest: null }, { error: problemText(e) });
    } finally {
      witnessesReading = false;
    }
    renderWitnesses();
  }

  /** ok (cosigned the latest checkpoint), behind, pending (never cosigned) or error. */
  function witnessStatus(w, latest) {
    if (w.error) return 'error';
    if (w.cosigned_size === null || w.cosigned_size === undefined) return 'pending';
    return latest === null || w.cosigned_size >= latest ? 'ok' : 'behind';
  }

  function renderWitnesses() {
    const section = $('witnesses');
    if (!section) return;
    const ws = state.witnesses;
    if (!ws) { section.hidden = true; return; }
    section.hidden = false;
    const summary = $('witnesses-summary');
    const items = [];
    let status;
    if (ws.error && !ws.witnesses.length) {
      status = 'error';
      summary.textContent = t('witnesses_error', { detail: ws.error });
    } else if (!ws.witnesses.length) {
      status = 'none';
      summary.textContent = t('witnesses_none');
    } else {
      const statuses = ws.witnesses.map((w) => witnessStatus(w, ws.latest));
      const n = statuses.filter((x) => x === 'ok').length;
      status = statuses.includes('error') ? 'error' : n === statuses.length ? 'ok' : 'behind';
      summary.textContent = (ws.latest === null
        ? t('witnesses_no_checkpoint')
        : t('witnesses_summary', { n: fmtInt(n), m: fmtInt(statuses.length), size: fmtInt(ws.latest) }))
        + (ws.error ? ' ' + t('witnesses_error', { detail: ws.error }) : '');
      ws.witnesses.forEach((w, i) => {
        const st = statuses[i];
        const when = w.cosigned_at === null || w.cosigned_at === undefined ? null : new Date(w.cosigned_at * 1000);
        const done = w.cosigned_size === null || w.cosigned_size === undefined ? null
          : { size: fmtInt(w.cosigned_size), time: when ? fmtWhen(when) : '?' };
        const parts = [];
        if (!done) parts.push(t('witness_pending'));
        else if (ws.latest === null || w.cosigned_size >= ws.latest) parts.push(t('witness_ok', done));
        else parts.push(t('witness_behind', Object.assign({ behind: fmtInt(ws.latest - w.cosigned_size) }, done)));
        if (w.error) parts.push(t('witness_error', { error: w.error }));
        const band = { ok: 'green', behind: 'amber', pending: 'amber', error: 'red' }[st];
        items.push(el('li', {
          className: 'witness witness-' + st,
          'data-testid': `witness-${i}`,
          dataset: { name: w.name, status: st, cosignedSize: done ? String(w.cosigned_size) : '', cosignedAt: when ? when.toISOString() : '' },
          title: w.vkey || null,
        },
        el('span', { className: 'badge small', dataset: { band }, text: t('witness_badge_' + st) }), ' ',
        el('strong', { className: 'witness-name', text: w.name }), ' — ',
        el('span', { className: 'witness-detail', 'data-testid': `witness-${i}-detail`, text: parts.join('; ') })));
      });
    }
    section.dataset.status = status;
    summary.dataset.status = status;
    $('witness-list').replaceChildren(...items);
  }

  function mergeWorker(w) {
    if (!w || !w.worker) return;
    const old = state.workers[w.worker];
    if (!old || (w.tree_size || 0) >= (old.tree_size || 0)) state.workers[w.worker] = { tree_size: w.tree_size, root: w.root };
  }

  function renderWorkers() {
    const names = Object.keys(state.workers).sort();
    const e = $('workers');
    e.textContent = names.length
      ? t('workers', { list: names.map((n) => t('worker_item', { worker: n, size: fmtInt(state.workers[n].tree_size || 0) })).join(', ') })
      : '';
  }

  function renderLive() {
    const lu = document.querySelector('[data-testid="last-updated"]');
    if (state.lastEventTime) {
      lu.textContent = t('last_updated', { time: fmtTime(state.lastEventTime) });
      lu.dataset.time = state.lastEventTime.toISOString();
    } else {
      lu.textContent = t('last_updated_never');
      lu.dataset.time = '';
    }
    const st = document.querySelector('[data-testid="stale"]');
    const secs = state.cfg ? state.cfg.stale_after_secs : 30;
    if (state.stale) {
      const text = t('stale', { secs: fmtInt(secs) });
      if (st.textContent !== text) st.textContent = text;
      st.hidden = false;
    } else {
      st.hidden = true;
      st.textContent = '';
    }
    document.body.classList.toggle('is-stale', state.stale);
    renderVerifyResult();
  }

  function checkStale() {
    const secs = state.cfg && typeof state.cfg.stale_after_secs === 'number' ? state.cfg.stale_after_secs : 30;
    const stale = Date.now() - state.lastEventAt > secs * 1000;
    if (stale !== state.stale) {
      state.stale = stale;
      renderLive();
    }
  }

  function announce(text, force) {
    const now = Date.now();
    if (!force && now - state.lastAnnounceAt < 60000) return; // live updates: at most one a minute
    state.lastAnnounceAt = now;
    $('announcer').textContent = text;
  }

  let eventSource = null;
  let trailingTimer = null;
  /** Whether a live message holds values of the view's scope or of a unit it ranks. */
  function concerns(message) {
    const shown = new Set([state.scope]);
    const rows = (state.view && state.view.children && state.view.children.rows) || [];
    for (const r of rows) shown.add(r.scope);
    return (message.values || []).some((v) => {
      const sc = v.scope || {};
      return shown.has(sc.kind === 'national' ? 'national' : `${sc.kind}:${sc.code}`);
    });
  }
  /** The tree size the METRICS bucket held at the last view read (the workers' marks). */
  function storedSize() {
    const marks = (state.view && state.view.workers) || [];
    return marks.reduce((m, w) => Math.max(m, w.tree_size || 0), 0);
  }
  function connectStream() {
    if (typeof EventSource === 'undefined') return;
    eventSource = new EventSource('/v1/metrics/stream');
    const heard = () => {
      state.lastEventAt = Date.now();
      state.lastEventTime = new Date();
      state.stale = false;
      renderLive();
    };
    eventSource.addEventListener('metric', (ev) => {
      heard();
      let relevant = true;
      try {
        const d = JSON.parse(ev.data);
        api.lastMetricEvent = d;
        relevant = concerns(d);
      } catch (_) { /* ignore */ }
      // Values of other places change all the time across the country: only this view's scope
      // and the units it ranks make it read the view again.
      if (!relevant) return;
      scheduleRefresh();
      // A worker sends its live values before the METRICS bucket stores them (within about a
      // second, [metrics] kv_interval_ms): read the view once more after that.
      clearTimeout(trailingTimer);
      trailingTimer = setTimeout(scheduleRefresh, 2000);
    });
    eventSource.addEventListener('worker', (ev) => {
      heard();
      try {
        const beat = JSON.parse(ev.data);
        // The worker has folded more than the bucket held when the view was read: read again.
        if ((beat.tree_size || 0) > storedSize()) scheduleRefresh();
        mergeWorker(beat);
        renderWorkers();
      } catch (_) { /* ignore */ }
    });
    eventSource.addEventListener('reset', () => { scheduleRefresh(); });
    eventSource.addEventListener('open', () => { document.body.dataset.stream = 'open'; });
    eventSource.addEventListener('error', () => {
      // The browser retries a dropped stream by itself; a refused one (e.g. 503) is closed for good,
      // so retry it here, gently.
      if (eventSource.readyState === EventSource.CLOSED) {
        document.body.dataset.stream = 'closed';
        eventSource = null;
        streamRetry = Math.min(60000, streamRetry ? streamRetry * 2 : 2000);
        setTimeout(connectStream, streamRetry);
      } else {
        document.body.dataset.stream = 'reconnecting';
      }
    });
    eventSource.addEventListener('open', () => { streamRetry = 0; });
  }
  let streamRetry = 0;

  // ---------------------------------------------------------------- verify

  function renderVerifyResult() {
    const r = document.querySelector('[data-testid="verify-result"]');
    if (!r) return;
    const v = state.verify;
    if (!v) { r.hidden = true; return; }
    r.hidden = false;
    // data-status is only ever "ok" or "fail" (empty while running: tests wait for a verdict)
    r.dataset.status = v.status === 'running' ? '' : v.status;
    r.setAttribute('aria-busy', String(v.status === 'running'));
    r.dataset.reason = v.code || '';
    // Witnesses with a cosignature verified here, of those the log lists (set on success only).
    r.dataset.cosigned = v.status === 'ok' ? String(v.cosigned) : '';
    r.dataset.witnesses = v.status === 'ok' ? String(v.witnesses) : '';
    let text;
    if (v.status === 'running') text = t('verify_running');
    else if (v.status === 'ok') {
      text = '✔ ' + t(v.key, v.params)
        + ' ' + (v.witnesses ? t('verify_cosigned', v.witnessParams) : t('verify_no_witnesses'))
        + (v.viewKey ? ' ' + t(v.viewKey, v.viewParams) : '');
    } else text = '✘ ' + t('verify_fail', { reason: t('reason_' + v.code, v.reasonParams) });
    r.textContent = text;
    r.title = v.detail || '';
  }

  async function runVerify() {
    const button = document.querySelector('[data-testid="verify"]');
    const set = (v) => { state.verify = v; renderVerifyResult(); };
    const fail = (code, detail, reasonParams) => set({ status: 'fail', code, detail: detail || '', reasonParams });
    if (button) button.disabled = true;
    set({ status: 'running' });
    try {
      await verifyOnce(set, fail);
    } catch (e) {
      fail(e && e.network ? 'network' : e && e.status ? 'network' : 'crypto', problemText(e));
    } finally {
      if (button) button.disabled = false;
    }
  }

  async function verifyOnce(set, fail) {
    const log = state.cfg && state.cfg.log;
    if (!log || !log.public_key || !log.key_name) return fail('bad_key', 'no log key in /v1/dashboard');
    let publicKey;
    try {
      publicKey = V.base64ToBytes(log.public_key);
      if (publicKey.length !== 32) throw new Error('public key is not 32 bytes');
      if (log.vkey) {
        const k = await V.parseVerifierKey(log.vkey);
        if (k.name !== log.key_name || !V.equalBytes(k.publicKey, publicKey)) throw new Error('vkey and public_key disagree');
      }
    } catch (e) {
      return fail('bad_key', e.message);
    }
    const origin = log.origin || log.key_name;
    const [cp, listed] = await Promise.all([getJSON('/v1/checkpoints/latest'), getJSON('/v1/witnesses')]);
    const r = await V.verifyCheckpoint(cp.note, { name: log.key_name, publicKey }, origin);
    if (!r.ok) return fail(r.code, r.error);
    const head = r.checkpoint; // what the signature covers; the JSON's size/root must agree with it
    if (cp.size !== head.size || String(cp.root).toLowerCase() !== head.rootHex) return fail('mismatch', `JSON says ${cp.size} ${cp.root}, note says ${head.size} ${head.rootHex}`);

    const storeKey = 'socai.lastCheckpoint.' + origin;
    let stored = null;
    try { stored = JSON.parse(localStorage.getItem(storeKey) || 'null'); } catch (_) { stored = null; }
    if (stored && stored.key && stored.key !== log.public_key) return fail('key_changed', `stored key ${stored.key}`);

    // Witnesses' cosignatures of this very checkpoint (C2SP tlog-cosignature), checked here over
    // the note text the log's signature was just checked over. What is trusted, as for the log's
    // key: the witness keys the server lists (/v1/witnesses) the first time this browser sees
    // each witness name (trust on first use), pinned with the log's key in localStorage (per log
    // origin) once a verification passes; a listed key that differs from the pinned one fails
    // Verify. Pinned keys the server no longer lists stay pinned, and their lines are checked
    // too. A cosignature naming a trusted key (name and key id) that does not verify fails
    // Verify, like a bad log signature; lines of unknown keys are ignored. "N of M": N trusted
    // witnesses with a valid cosignature of this checkpoint, M the trusted witnesses (listed or
    // pinned: a server that stops listing a witness cannot shrink M). A witness behind the log
    // (not yet cosigned the latest checkpoint) lowers N; it is not a failure.
    const pinned = (stored && stored.witnesses && typeof stored.witnesses === 'object') ? stored.witnesses : {};
    const listedKeys = [];
    for (const w of (listed && listed.witnesses) || []) {
      const name = w && typeof w.name === 'string' ? w.name : '?';
      let k;
      try {
        k = await V.parseWitnessKey(w.vkey);
        if (k.name !== name) throw new Error(`key name ${k.name} is not the witness's name`);
      } catch (e) {
        return fail('bad_witness_key', e.message, { name });
      }
      if (typeof pinned[name] === 'string' && pinned[name] !== w.vkey) {
        return fail('witness_key_changed', `pinned ${pinned[name]}, now ${w.vkey}`, { name });
      }
      listedKeys.push(Object.assign(k, { vkey: w.vkey }));
    }
    const trusted = [...listedKeys];
    for (const [name, vkey] of Object.entries(pinned)) {
      if (listedKeys.some((k) => k.name === name)) continue;
      try { trusted.push(Object.assign(await V.parseWitnessKey(vkey), { vkey })); } catch (_) { /* not ours: never pinned */ }
    }
    const cs = await V.verifyCosignatures(r.body, cp.cosignatures || [], trusted);
    if (!cs.ok) return fail(cs.code, cs.error, { name: cs.name || '' });
    const cosigned = cs.cosigned.length;
    const witnessParams = { n: fmtInt(cosigned), m: fmtInt(trusted.length) };

    const d = V.decide(stored, head);
    let key = 'verify_ok_first';
    const params = { size: fmtInt(head.size) };
    if (d.action === 'rollback') return fail('rollback', `stored size ${stored.size} > ${head.size}`);
    if (d.action === 'fork') return fail('fork', `stored root ${stored.root} at size ${stored.size}, now ${head.rootHex}`);
    if (d.action === 'same') key = 'verify_ok_same';
    if (d.action === 'prove') {
      const proof = await getJSON(`/v1/proofs/consistency?from=${d.from}&to=${d.to}`);
      const c = await V.verifyConsistencyProof(proof, stored, head);
      if (!c.ok) return fail('consistency', c.error);
      key = 'verify_ok_consistent';
      params.old = fmtInt(stored.size);
    }

    // The figures on screen: computed at the signed size, they must have the signed root; at an
    // earlier size, their root must be a prefix of the signed tree (a consistency proof checked
    // against both roots: nothing of the server is trusted). Newer figures are not covered yet.
    let viewKey = null;
    let viewParams = null;
    const v = state.view;
    if (v && v.tree_size >= 1 && /^[0-9a-f]{64}$/i.test(v.root || '')) {
      viewParams = { size: fmtInt(v.tree_size), checkpoint: fmtInt(head.size) };
      if (v.tree_size === head.size) {
        if (v.root.toLowerCase() !== head.rootHex) return fail('view', `figures at ${v.tree_size} have root ${v.root}, the checkpoint ${head.rootHex}`);
        viewKey = 'verify_view_covered';
      } else if (v.tree_size < head.size) {
        const proof = await getJSON(`/v1/proofs/consistency?from=${v.tree_size}&to=${head.size}`);
        const c = await V.verifyConsistencyProof(proof, { size: v.tree_size, root: v.root.toLowerCase() }, head);
        if (!c.ok) return fail('consistency', `figures at ${v.tree_size}: ${c.error}`);
        viewKey = 'verify_view_older';
      } else {
        viewKey = 'verify_view_newer';
      }
    }
    const witnesses = Object.assign({}, pinned);
    for (const k of listedKeys) witnesses[k.name] = k.vkey;
    try {
      localStorage.setItem(storeKey, JSON.stringify({ size: head.size, root: head.rootHex, key: log.public_key, witnesses }));
    } catch (_) { /* storage full or disabled: still verified */ }
    set({
      status: 'ok', code: d.action, key, params, viewKey, viewParams, size: head.size, root: head.rootHex,
      cosigned, witnesses: trusted.length, witnessParams,
    });
  }

  // ---------------------------------------------------------------- wall mode

  let wallTimer = null;
  async function startWall() {
    document.body.classList.add('wall');
    for (const sel of ['#controls', '.skip-link', '#below-section', '#trend-section']) {
      const e = document.querySelector(sel);
      if (e) e.remove();
    }
    await refreshProvinces();
    const start = state.wallProvinces.findIndex((p) => p.scope === state.scope);
    state.wallIndex = start >= 0 ? start : 0;
    if (state.wallProvinces.length) state.scope = state.wallProvinces[state.wallIndex].scope;
    await load({ navigation: true });
    const secs = state.cfg && state.cfg.wall_rotate_secs > 0 ? state.cfg.wall_rotate_secs : 20;
    wallTimer = setInterval(async () => {
      if (state.wallIndex + 1 >= state.wallProvinces.length) await refreshProvinces();
      if (!state.wallProvinces.length) { state.scope = 'national'; return load({ navigation: true }); }
      state.wallIndex = (state.wallIndex + 1) % state.wallProvinces.length;
      state.scope = state.wallProvinces[state.wallIndex].scope;
      return load({ navigation: true });
    }, secs * 1000);
  }

  async function refreshProvinces() {
    try {
      const nat = await getJSON(`/v1/dashboard/view?scope=national&window=${q(state.window)}`);
      const rows = (nat.children && nat.children.rows) || [];
      if (rows.length) state.wallProvinces = rows.map((r) => ({ scope: r.scope, name: r.name, name_en: r.name_en }));
    } catch (_) { /* keep the old list */ }
  }

  // ---------------------------------------------------------------- events

  function onClick(ev) {
    if (ev.defaultPrevented || ev.button !== 0) return;
    const target = ev.target instanceof Element ? ev.target : null;
    if (!target) return;
    const link = target.closest('a[data-scope]');
    if (link) {
      if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return; // new tab/window: let the browser
      ev.preventDefault();
      if (state.wall) return;
      // From an agency to one of its procedures, the agency stays in the breadcrumb.
      const to = link.dataset.scope;
      const via = /^procedure:/.test(to) ? (/^agency:/.test(state.scope) ? state.scope : state.via) : null;
      navigate({ scope: to, via }).then(() => { const h = $('view-title'); if (h) { h.setAttribute('tabindex', '-1'); h.focus({ preventScroll: false }); } });
      return;
    }
    const button = target.closest('button');
    if (!button || state.wall) return;
    if (button.dataset.window) { navigate({ window: button.dataset.window }); return; }
    if (button.dataset.testid === 'lang-toggle') {
      const lang = state.lang === 'vi' ? 'en' : 'vi';
      history.replaceState(null, '', urlFor({ lang }));
      state.lang = lang;
      for (const c of Object.values(charts)) c.sig = null; // rebuild with the new labels
      render();
      return;
    }
    if (button.dataset.testid === 'verify') { runVerify(); return; }
    if (button.dataset.testid === 'export-csv') { exportCsv(); return; }
    if (button.dataset.action === 'retry') { load({ navigation: true }); return; }
    if (button.classList.contains('tile-select')) {
      const metric = button.dataset.metric;
      if (metric === state.metric) return;
      history.replaceState(null, '', urlFor({ metric }));
      state.metric = metric;
      if (state.sort.key === 'm:' + metric) state.sort = { key: 'value', dir: 'desc' };
      load({ navigation: false });
      render(); // immediate feedback (selected tile, below-target list); the series follows
      return;
    }
    if (button.dataset.sort) {
      const key = button.dataset.sort;
      if (state.sort.key === key) state.sort.dir = state.sort.dir === 'asc' ? 'desc' : 'asc';
      else state.sort = { key, dir: key === 'name' || key === 'rank' ? 'asc' : 'desc' };
      renderRanking();
    }
  }

  // ---------------------------------------------------------------- start

  const api = {
    state,
    refresh: () => load({ navigation: false }),
    navigate: (patch) => navigate(patch),
    verify: () => runVerify(),
    belowTargetCsv,
    lastExport: null,
    lastMetricEvent: null,
    ready: null,
  };
  window.socaiDashboard = api;

  async function start() {
    readUrl();
    document.documentElement.lang = state.lang;
    renderStatic();
    try {
      state.cfg = await getJSON('/v1/dashboard');
    } catch (e) {
      state.viewError = e;
      state.cfg = null;
    }
    readUrl(); // the metric list comes with the configuration
    buildTiles();
    document.addEventListener('click', onClick);
    window.addEventListener('popstate', () => {
      if (state.wall) return;
      readUrl();
      load({ navigation: true });
    });
    if (typeof ResizeObserver !== 'undefined') {
      let pending = false;
      new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; resizeCharts(); });
      }).observe($('main'));
    }
    state.lastEventAt = Date.now();
    setInterval(checkStale, 1000);
    setInterval(refreshWitnesses, WITNESS_POLL_MS);
    connectStream();
    if (!state.cfg) {
      render();
      $('main').dataset.status = 'error';
      setTimeout(() => location.reload(), 10000);
      return;
    }
    if (state.wall) await startWall();
    else await load({ navigation: true });
  }

  api.ready = new Promise((resolve) => {
    const go = () => start().then(resolve, (e) => { window.__socaiErrors.push('start: ' + problemText(e)); console.error(e); resolve(); });
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', go);
    else go();
  });
})();
