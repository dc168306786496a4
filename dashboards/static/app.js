// perfci dashboards: draws each page's embedded JSON with uPlot. Store text is untrusted: it only ever reaches
// the page through textContent, option values and canvas text, never innerHTML.
"use strict";

const DATA = JSON.parse(document.getElementById("page-data")?.textContent || "null");
const PARAMS = new URLSearchParams(location.search);
const COLORS = ["#2f5fd0", "#d0562f", "#2f9d5c", "#8a3fc1", "#c19a1f", "#1f9bb0", "#c1337a", "#5d6575",
  "#7fa32e", "#b05a1f", "#3f7fc1", "#a13f3f"];
const LATENCY = /^(ttft_ms|tpot_ms|itl_ms|e2e_ms)_(mean|p50|p90|p95|p99)$/;

function el(tag, props = {}, text) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  if (text !== undefined) node.textContent = text;
  return node;
}

function unique(values) { return [...new Set(values)]; }

// Fill a <select> with values (labels optional); keeps `wanted` if it is offered, else the first (or `fallback`).
function fill(select, values, wanted, labels, fallback) {
  select.replaceChildren(...values.map((v, i) => el("option", { value: v }, labels ? labels[i] : (v === "" ? "(all)" : v))));
  select.value = values.includes(wanted) ? wanted : (fallback !== undefined && values.includes(fallback) ? fallback : values[0] ?? "");
  select.disabled = values.length < 2;
  return select.value;
}

// The URL keeps the filters: a deep link opens the same view.
function keepInUrl(state) {
  const query = new URLSearchParams(Object.entries(state).filter(([, v]) => v !== "" && v !== undefined && v !== null));
  history.replaceState(null, "", "?" + query.toString());
}

function splitMetric(metric) {
  const m = LATENCY.exec(metric || "");
  return m ? [m[1], m[2]] : [metric || "", ""];
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  return Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toPrecision(digits)).toString();
}

function pct(v) { return v === null || v === undefined ? "?" : (v >= 0 ? "+" : "") + (v * 100).toFixed(1) + "%"; }

// One uPlot chart in `box`, sized to it. `box.dataset.marks` counts the values drawn (browser tests read it).
function plot(box, opts, data) {
  box.replaceChildren();
  const width = Math.max(box.clientWidth || 0, 480);
  const chart = new uPlot({ width, height: opts.height || 380, ...opts }, data, box);
  const marks = data.slice(1).reduce((n, ys) => n + ys.filter(v => v !== null && v !== undefined).length, 0);
  box.dataset.marks = String(marks);
  return chart;
}

function indexAxis(labels) {
  return {
    values: (u, splits) => splits.map(i => Number.isInteger(i) && labels[i] !== undefined ? labels[i] : ""),
    incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
    size: 60, rotate: 0,
  };
}

// dash: [] solid, else a [on, off] pattern in CSS pixels.
function vline(u, x, color, dash) {
  const ctx = u.ctx, px = u.valToPos(x, "x", true);
  ctx.save();
  ctx.strokeStyle = color; ctx.lineWidth = 2 * devicePixelRatio; ctx.setLineDash(dash.map(d => d * devicePixelRatio));
  ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
  ctx.restore();
}

function hline(u, y, color, label) {
  const ctx = u.ctx, py = u.valToPos(y, "y", true);
  ctx.save();
  ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2 * devicePixelRatio;
  ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
  ctx.beginPath(); ctx.moveTo(u.bbox.left, py); ctx.lineTo(u.bbox.left + u.bbox.width, py); ctx.stroke();
  ctx.font = `${12 * devicePixelRatio}px sans-serif`;
  ctx.textAlign = "right";
  ctx.fillText(label, u.bbox.left + u.bbox.width - 6 * devicePixelRatio, py - 5 * devicePixelRatio);
  ctx.restore();
}

function marker(u, x, y, color, shape) {
  if (y === null || y === undefined) return;
  const ctx = u.ctx, px = u.valToPos(x, "x", true), py = u.valToPos(y, "y", true), r = 7 * devicePixelRatio;
  ctx.save();
  ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2 * devicePixelRatio;
  ctx.beginPath();
  if (shape === "triangle") { ctx.moveTo(px, py - r * 2.2); ctx.lineTo(px - r, py - r * 0.6); ctx.lineTo(px + r, py - r * 0.6); ctx.closePath(); ctx.fill(); }
  else { ctx.arc(px, py, r * 1.3, 0, 2 * Math.PI); ctx.stroke(); }
  ctx.restore();
}

function yRange(values, fromZero) {
  const finite = values.flat().filter(v => v !== null && v !== undefined && Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (fromZero) lo = Math.min(0, lo);
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  return [fromZero && lo >= 0 ? 0 : lo - pad, hi + pad];
}

// --- trends ------------------------------------------------------------------------------------------------

const shards = {};
const waiting = {};
window.perfciShard = (name, data) => { shards[name] = data; (waiting[name] || []).forEach(f => f(data)); delete waiting[name]; };

function loadShard(name, then) {
  if (shards[name]) return then(shards[name]);
  if (waiting[name]) return waiting[name].push(then);
  waiting[name] = [then];
  const script = el("script", { src: "data/" + name });
  script.onerror = () => { delete waiting[name]; console.warn("missing data file", name); };
  document.head.append(script);
}

function trendsPage() {
  const form = document.getElementById("filters"), f = form.elements, box = document.getElementById("chart");
  const scopes = DATA.scopes;
  const state = Object.fromEntries(["engine", "hardware", "suite", "model", "workload", "load", "metric"].map(k => [k, PARAMS.get(k) ?? undefined]));
  if (!scopes.length) { document.getElementById("empty").hidden = false; return; }

  function refresh() {
    state.engine = fill(f.engine, unique(scopes.map(s => s.engine)), state.engine);
    state.hardware = fill(f.hardware, unique(scopes.filter(s => s.engine === state.engine).map(s => s.hardware)), state.hardware);
    const inHw = scopes.filter(s => s.engine === state.engine && s.hardware === state.hardware);
    state.suite = fill(f.suite, unique(inHw.map(s => s.suite)), state.suite);
    const scope = inHw.find(s => s.suite === state.suite);
    state.model = fill(f.model, unique(scope.series.map(s => s.model)), state.model);
    const ofModel = scope.series.filter(s => s.model === state.model);
    state.workload = fill(f.workload, unique(ofModel.map(s => s.workload)), state.workload);
    state.load = fill(f.load, ["", ...unique(ofModel.filter(s => s.workload === state.workload).map(s => s.load))], state.load ?? "");
    const startupSeries = state.workload === "(startup)";
    const metrics = scope.metrics.filter(m => m.startsWith("startup.") === startupSeries);
    const [wantBase, wantStat] = splitMetric(state.metric || (startupSeries ? "startup.total" : "ttft_ms_p50"));
    const base = fill(f.base, unique(metrics.map(m => splitMetric(m)[0])), wantBase, undefined, startupSeries ? "startup.total" : "ttft_ms");
    const stats = unique(metrics.filter(m => splitMetric(m)[0] === base).map(m => splitMetric(m)[1])).filter(s => s);
    const stat = fill(f.stat, stats.length ? stats : [""], wantStat || "p50", stats.length ? undefined : ["—"], "p50");
    state.metric = stat ? `${base}_${stat}` : base;
    keepInUrl(state);
    loadShard(`trends/${scope.id}/${state.metric}.js`, shard => draw(scope, shard));
  }

  function draw(scope, shard) {
    const lines = shard.series.filter(s => s.model === state.model && s.workload === state.workload && (!state.load || s.load === state.load));
    const marksList = document.getElementById("marks");
    marksList.replaceChildren();
    document.getElementById("empty").hidden = lines.length > 0;
    if (!lines.length) { box.replaceChildren(); box.dataset.marks = "0"; return; }
    const labels = shard.builds.map(b => b.label);
    const xs = labels.map((_, i) => i);
    const series = [{ label: "build", value: (u, i) => i === null ? "" : `${labels[i]} · first run ${(shard.builds[i].first_run || "?").slice(0, 16).replace("T", " ")}` }];
    lines.forEach((line, k) => series.push({ label: line.load, stroke: COLORS[k % COLORS.length], width: 2, spanGaps: true,
      points: { show: true, size: 6, fill: COLORS[k % COLORS.length] }, value: (u, v) => fmt(v) }));
    const decorate = u => lines.forEach((line, k) => {
      line.change_points.forEach(c => vline(u, c.index, c.verdict === "regression" ? "#d33" : "#2a2", c.pending ? [2, 4] : [6, 4]));
      line.findings.forEach(m => marker(u, m.index, line.values[m.index], "#d33", "triangle"));
      line.culprits.forEach(c => vline(u, c.index, "#8a3fc1", []));
    });
    plot(box, {
      title: `${state.metric} · ${state.model} · ${state.workload}`,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: () => yRange(lines.map(l => l.values), true) } },
      axes: [indexAxis(labels), { label: state.metric, size: 70 }],
      series, hooks: { draw: [decorate] },
    }, [xs, ...lines.map(l => l.values)]);
    for (const line of lines) {
      for (const c of line.change_points) marksList.append(el("li", { className: "change-point" },
        `change point at ${labels[c.index]} (${line.load}): ${pct(c.rel_change)}, ${c.verdict}${c.pending ? ", pending" : ""}`));
      for (const m of line.findings) marksList.append(el("li", { className: "finding" },
        `finding (${m.method}, ${m.status}) first bad ${labels[m.index]} (${line.load}): ${pct(m.rel_change)}`));
      for (const c of line.culprits) {
        const item = el("li", { className: "culprit" }, `bisect ${c.bisect} culprit ${c.culprit} (${line.load})${c.subject ? ": " + c.subject : ""} `);
        if (c.url && /^https?:\/\//.test(c.url)) item.append(el("a", { href: c.url, rel: "noopener noreferrer" }, "commit"));
        marksList.append(item);
      }
    }
  }

  form.addEventListener("change", e => {
    const name = e.target.name;
    if (name === "base" || name === "stat") state.metric = f.stat.value ? `${f.base.value}_${f.stat.value}` : f.base.value;
    else state[name] = e.target.value;
    refresh();
  });
  refresh();
}

// --- latency vs load ---------------------------------------------------------------------------------------

function loadPage() {
  const form = document.getElementById("filters"), f = form.elements, box = document.getElementById("chart");
  const groups = DATA.groups;
  if (!groups.length) { document.getElementById("empty").hidden = false; return; }
  const fields = ["hardware", "suite", "model", "workload"];
  const key = g => fields.map(k => g[k]).join(" · ");
  let g = Math.max(0, groups.findIndex(x => fields.every(k => !PARAMS.get(k) || x[k] === PARAMS.get(k))));
  let chosen = PARAMS.get("builds") ? PARAMS.get("builds").split(",") : null;
  let [base, stat] = splitMetric(PARAMS.get("metric") || "ttft_ms_p99");

  function defaultBuilds(group) {  // this release and the last, of each engine
    const byEngine = {};
    group.builds.forEach(b => (byEngine[b.engine] = byEngine[b.engine] || []).push(b.build));
    return Object.values(byEngine).flatMap(b => b.slice(-2));
  }

  function refresh() {
    const group = groups[g];
    fill(f.group, groups.map((_, i) => String(i)), String(g), groups.map(key));
    base = fill(f.metric, DATA.metrics, base);
    stat = fill(f.stat, DATA.stats, stat, undefined, "p99");
    const offered = group.builds.map(b => b.build);
    if (!chosen || (chosen.length && !chosen.some(b => offered.includes(b)))) chosen = defaultBuilds(group);
    chosen = chosen.filter(b => offered.includes(b));
    const field = document.getElementById("builds");
    field.replaceChildren(el("legend", {}, "builds"), ...offered.map(build => {
      const label = el("label");
      label.append(el("input", { type: "checkbox", name: "build", value: build, checked: chosen.includes(build) }), " " + build);
      return label;
    }));
    const metric = `${base}_${stat}`;
    keepInUrl({ ...Object.fromEntries(fields.map(k => [k, group[k]])), metric, builds: chosen.join(",") });
    loadShard(`load/${g}/${metric}.js`, curves => draw(group, metric, curves));
  }

  function draw(group, metric, all) {
    const picked = group.builds.map((b, i) => [b.build, all[i]]).filter(([build]) => chosen.includes(build));
    const tables = picked.map(([, c]) => {
      const pairs = c.request_rate.map((x, i) => [x, c.values[i]]).filter(([x]) => x !== null);
      return [pairs.map(p => p[0]), pairs.map(p => p[1])];
    });
    const any = tables.some(t => t[0].length);
    document.getElementById("empty").hidden = any;
    if (!any) { box.replaceChildren(); box.dataset.marks = "0"; return; }
    const data = uPlot.join(tables);
    const slo = group.slo && group.slo[base];
    const decorate = u => {
      if (slo) hline(u, slo, "#d33", `SLO: p${group.slo.percentile} ${base} ≤ ${slo} ms`);
      picked.forEach(([, c], k) => {
        if (c.max_goodput !== null) marker(u, c.request_rate[c.max_goodput], c.values[c.max_goodput], COLORS[k % COLORS.length], "ring");
      });
    };
    plot(box, {
      title: `${metric} vs achieved request rate · ${key(group)}`,
      scales: { x: { time: false }, y: { range: () => yRange([...data.slice(1), slo ? [slo] : []], true) } },
      axes: [{ label: "achieved requests/s" }, { label: metric, size: 70 }],
      series: [{ label: "req/s", value: (u, v) => fmt(v) }, ...picked.map(([build], k) => ({ label: build, stroke: COLORS[k % COLORS.length], width: 2,
        spanGaps: true, points: { show: true, size: 7, fill: COLORS[k % COLORS.length] }, value: (u, v) => fmt(v) }))],
      hooks: { draw: [decorate] },
    }, data);
  }

  form.addEventListener("change", e => {
    if (e.target.name === "group") { g = Number(e.target.value); chosen = null; }
    if (e.target.name === "metric") base = e.target.value;
    if (e.target.name === "stat") stat = e.target.value;
    refresh();
  });
  document.getElementById("builds").addEventListener("change", () => {
    chosen = [...document.querySelectorAll("#builds input:checked")].map(i => i.value);
    refresh();
  });
  refresh();
}

// --- engine vs engine --------------------------------------------------------------------------------------

function enginesPage() {
  const form = document.getElementById("filters"), f = form.elements, box = document.getElementById("chart");
  const scopes = DATA.scopes;
  if (!scopes.length) { document.getElementById("empty").hidden = false; return; }
  const state = { hardware: PARAMS.get("hardware"), suite: PARAMS.get("suite"), x: PARAMS.get("x"), y: PARAMS.get("y"), metric: PARAMS.get("metric") || "ttft_ms_p50" };

  function refresh() {
    const labels = scopes.map(s => `${s.hardware} · ${s.suite}`);
    let i = scopes.findIndex(s => s.hardware === state.hardware && s.suite === state.suite);
    i = Number(fill(f.scope, scopes.map((_, j) => String(j)), String(Math.max(i, 0)), labels));
    const scope = scopes[i];
    Object.assign(state, { hardware: scope.hardware, suite: scope.suite });
    const builds = scope.builds.map(b => b.build);
    // Default: the newest builds of two engines (vLLM vs SGLang), else this build against the one before.
    const engines = unique(scope.builds.map(b => b.engine));
    const newest = e => scope.builds.filter(b => b.engine === e).at(-1).build;
    const [dx, dy] = engines.length > 1 ? [newest(engines[0]), newest(engines[1])] : [builds.at(-2) ?? builds[0], builds.at(-1)];
    state.x = fill(f.x, builds, state.x ?? dx);
    state.y = fill(f.y, builds, state.y ?? dy);
    f.x.disabled = f.y.disabled = false;
    state.metric = fill(f.metric, scope.metrics, state.metric);
    keepInUrl(state);
    draw(scope);
  }

  function draw(scope) {
    const bx = scope.builds.find(b => b.build === state.x).values[state.metric] || [];
    const by = scope.builds.find(b => b.build === state.y).values[state.metric] || [];
    const pairs = scope.series.map((name, i) => [bx[i], by[i], name]).filter(([x, y]) => x != null && y != null).sort((a, b) => a[0] - b[0]);
    document.getElementById("empty").hidden = pairs.length > 0;
    if (!pairs.length) { box.replaceChildren(); box.dataset.marks = "0"; return; }
    const range = yRange([pairs.map(p => p[0]), pairs.map(p => p[1])], true);
    const diagonal = u => {
      const ctx = u.ctx;
      ctx.save(); ctx.strokeStyle = "#888"; ctx.lineWidth = 1.5 * devicePixelRatio; ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(u.valToPos(range[0], "x", true), u.valToPos(range[0], "y", true));
      ctx.lineTo(u.valToPos(range[1], "x", true), u.valToPos(range[1], "y", true)); ctx.stroke();
      ctx.fillStyle = "#888"; ctx.font = `${12 * devicePixelRatio}px sans-serif`;
      ctx.fillText("y = x", u.valToPos(range[1], "x", true) - 40 * devicePixelRatio, u.valToPos(range[1], "y", true) + 16 * devicePixelRatio);
      ctx.restore();
    };
    plot(box, {
      title: `${state.metric}: ${state.y} against ${state.x}`, height: 480,
      scales: { x: { time: false, range: () => range }, y: { range: () => range } },
      axes: [{ label: state.x }, { label: state.y, size: 70 }],
      series: [{ label: state.x, value: (u, v, si, i) => i === null ? "—" : `${pairs[i][2]}: ${fmt(v)}` },
        { label: state.y, stroke: COLORS[0], paths: () => null, points: { show: true, size: 9, fill: COLORS[0] }, value: (u, v) => fmt(v) }],
      hooks: { draw: [diagonal] },
      cursor: { dataIdx: (u, s, i) => i },
    }, [pairs.map(p => p[0]), pairs.map(p => p[1])]);
  }

  form.addEventListener("change", e => {
    if (e.target.name === "scope") { const s = scopes[Number(e.target.value)]; Object.assign(state, { hardware: s.hardware, suite: s.suite, x: null, y: null }); }
    else state[e.target.name] = e.target.value;
    refresh();
  });
  refresh();
}

// --- startup -----------------------------------------------------------------------------------------------

function startupPage() {
  const form = document.getElementById("filters"), f = form.elements, holder = document.getElementById("charts");
  const stacks = DATA.stacks;
  if (!stacks.length) { document.getElementById("empty").hidden = false; return; }
  const state = { engine: PARAMS.get("engine"), hardware: PARAMS.get("hardware") };

  function refresh() {
    state.engine = fill(f.engine, unique(stacks.map(s => s.engine)), state.engine);
    state.hardware = fill(f.hardware, stacks.filter(s => s.engine === state.engine).map(s => s.hardware), state.hardware);
    keepInUrl(state);
    const stack = stacks.find(s => s.engine === state.engine && s.hardware === state.hardware);
    holder.replaceChildren();
    for (const cache of stack.caches) {
      const box = el("div", { className: "chart startup-chart" });
      box.dataset.cache = cache.cache;
      holder.append(el("h2", {}, `${cache.cache} start`), el("p", { className: "small" }, cache.meaning), box);
      draw(box, stack.phases, cache);
    }
  }

  function draw(box, phases, cache) {
    const n = cache.builds.length, xs = cache.builds.map((_, i) => i);
    // Cumulative sums, tallest first: each bar is drawn over the taller one behind it, which shows as a stack.
    let running = new Array(n).fill(0);
    const tops = phases.map(p => (running = running.map((r, i) => r + (cache.phases[p][i] ?? 0))));
    const order = phases.map((p, k) => k).reverse();
    const bars = uPlot.paths.bars({ size: [0.6, 80] });
    plot(box, {
      title: `${state.engine} on ${state.hardware}: ${cache.cache} start (seconds)`,
      scales: { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: () => yRange(tops, true) } },
      axes: [indexAxis(cache.builds), { label: "seconds", size: 60 }],
      series: [{ label: "build", value: (u, i) => i === null ? "" : cache.builds[i] },
        ...order.map(k => ({ label: phases[k], fill: COLORS[k % COLORS.length] + "cc", stroke: COLORS[k % COLORS.length], paths: bars,
          points: { show: false }, value: (u, v, si, i) => i === null ? "" : fmt(cache.phases[phases[k]][i]) + " s" }))],
    }, [xs, ...order.map(k => tops[k])]);
  }

  form.addEventListener("change", e => { state[e.target.name] = e.target.value; refresh(); });
  refresh();
}

// --- cost --------------------------------------------------------------------------------------------------

function costPage() {
  const box = document.getElementById("chart");
  const rows = DATA.rows.filter(r => r.usd_per_mtok !== null);
  if (!rows.length) { box.hidden = true; return; }
  const labels = rows.map(r => `${r.build} · ${r.hardware} · ${r.workload}`);
  plot(box, {
    title: "$ per million output tokens at max goodput", height: 320,
    scales: { x: { time: false, range: [-0.5, rows.length - 0.5] }, y: { range: () => yRange([rows.map(r => r.usd_per_mtok)], true) } },
    axes: [indexAxis(labels), { label: "$/M tokens", size: 70 }],
    series: [{ label: "row", value: (u, i) => i === null ? "" : labels[i] },
      { label: "$/M output tokens", fill: COLORS[0] + "cc", stroke: COLORS[0], paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false }, value: (u, v) => fmt(v) }],
  }, [rows.map((_, i) => i), rows.map(r => r.usd_per_mtok)]);
}

// --- run: the raw point table -------------------------------------------------------------------------------

function runPage() {
  const table = document.getElementById("points");
  const head = el("tr");
  DATA.columns.forEach(c => head.append(el("th", {}, c)));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...DATA.rows.map(row => {
    const tr = el("tr");
    row.forEach(v => tr.append(el("td", {}, v === null ? "" : typeof v === "number" && !Number.isInteger(v) ? fmt(v, 4) : String(v))));
    return tr;
  }));
}

const PAGES = { run: runPage, trends: trendsPage, load: loadPage, engines: enginesPage, startup: startupPage, cost: costPage };
PAGES[document.body.dataset.page]?.();
