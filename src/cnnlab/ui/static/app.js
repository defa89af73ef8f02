// cnnlab ui: fetches each page's JSON from this server and draws it. Every piece of run text goes
// into the page through textContent or attribute values, never as HTML.
"use strict";

const POLL_MS = Number(document.body.dataset.pollMs) || 2000;
const IDLE_POLL_MS = 5 * POLL_MS;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const LOSS_NAMES = { cross_entropy: "cross-entropy", mse: "mean squared error", nll: "negative log-likelihood" };
const DARK = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
const PHONE = window.matchMedia ? window.matchMedia("(max-width: 700px)") : null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Calls `step` now and again after each answer: every POLL_MS while it returns true (something
// trains: the "live" badge shows), else every IDLE_POLL_MS (a sweep may be started again).
function poll(step) {
  const live = document.getElementById("live");
  const tick = async () => {
    let active = false;
    try {
      active = await step();
    } catch (error) {
      showError(error);
    }
    live.hidden = !active;
    setTimeout(tick, active ? POLL_MS : IDLE_POLL_MS);
  };
  tick();
}

function showError(error) {
  let box = document.getElementById("error");
  if (!box) {
    box = el("p", { id: "error", class: "error" });
    document.querySelector("main").prepend(box);
  }
  box.textContent = String(error.message || error);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return seconds.toFixed(1) + "s";
  const minutes = Math.floor(Math.round(seconds) / 60);
  const secs = String(Math.round(seconds) % 60).padStart(2, "0");
  if (minutes < 60) return `${minutes}m ${secs}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}
const statusBadge = (status) => el("span", { class: `status s-${status.split(" ")[0]}` }, status);
const runLink = (id, text) => el("a", { href: `/runs/${encodeURIComponent(id)}` }, text ?? id);
const compareHref = (ids) => "/compare?runs=" + ids.map(encodeURIComponent).join(",");
const tagChips = (tags) => (tags || []).map((tag) => el("span", { class: "tag" }, tag));
const lossName = (loss) => LOSS_NAMES[loss] || loss;

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// --- charts: integer epochs, a marker on every point, smoothing and log scale, dark mode ----------

const view = { smoothing: 0, log: false };
const drawn = new Map();  // chart id -> [traces, layout, options]: drawn again when a control changes

function readView() {
  const params = new URLSearchParams(location.search);
  view.smoothing = Math.min(0.95, Math.max(0, Number(params.get("smooth")) || 0));
  view.log = params.get("log") === "1";
}

function writeParams(values) {
  const params = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(values)) {
    if (value === "" || value === null || value === undefined || value === false) params.delete(key);
    else params.set(key, value === true ? "1" : String(value));
  }
  const query = params.toString().replace(/%2C/g, ",");
  history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
}

// TensorBoard's smoothing: an exponential moving average, debiased so the first points are not
// pulled towards zero; gaps (null) stay gaps.
function smooth(values, weight) {
  if (!weight) return values;
  let last = 0, count = 0;
  return values.map((v) => {
    if (v === null || v === undefined || !Number.isFinite(v)) return v;
    last = last * weight + (1 - weight) * v;
    count += 1;
    return last / (1 - Math.pow(weight, count));
  });
}

function epochAxis(traces) {
  const last = Math.max(1, ...traces.flatMap((trace) => trace.x || []).filter(Number.isFinite));
  // Whole epochs only: a tick per epoch up to 10, then every 2nd, 5th, 10th ... epoch.
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
  const dtick = steps.find((step) => last / step <= 10) || Math.ceil(last / 10);
  return { title: { text: "epoch" }, tickmode: "linear", tick0: 0, dtick, rangemode: "nonnegative" };
}

function colours() {
  const style = getComputedStyle(document.body);
  return { fg: style.getPropertyValue("--fg").trim() || "#1d232b", line: style.getPropertyValue("--line").trim() || "#dde2e7" };
}

function render(id) {
  const node = document.getElementById(id);
  const entry = drawn.get(id);
  if (!node || !entry || !window.Plotly) return;
  const [traces, layout, options] = entry;
  const { fg, line } = colours();
  const shown = traces.map((trace) => ({
    ...trace, y: options.smoothable === false ? trace.y : smooth(trace.y, view.smoothing),
    mode: "lines+markers", marker: { size: trace.x.length === 1 ? 8 : 4, ...(trace.marker || {}) },
  }));
  const yaxis = { gridcolor: line, zerolinecolor: line, ...(layout.yaxis || {}) };
  if (view.log && options.loggable) {
    yaxis.type = "log";
    if (yaxis.title && yaxis.title.text) yaxis.title = { text: yaxis.title.text + " (log scale)" };
  }
  Plotly.react(node, shown, {
    margin: { l: 60, r: 15, t: 35, b: 40 }, height: PHONE && PHONE.matches ? 300 : 340,
    legend: { orientation: "h", x: 0, y: -0.3, yanchor: "top" },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg },
    ...layout,
    xaxis: { ...epochAxis(traces), gridcolor: line, zerolinecolor: line },
    yaxis,
  }, PLOT_CONFIG);
}

// Draws `traces` (x: epochs) into the element `id`; `options.loggable`: the log-scale control applies.
function chart(id, traces, layout, options = {}) {
  drawn.set(id, [traces, layout, options]);
  render(id);
}

function curveControls() {
  const box = document.getElementById("curve-controls");
  if (!box) return;
  readView();
  const slider = el("input", { type: "range", min: "0", max: "0.95", step: "0.05", value: String(view.smoothing),
    id: "smoothing", "aria-label": "smoothing" });
  const value = el("output", { for: "smoothing" }, view.smoothing.toFixed(2));
  const log = el("input", { type: "checkbox", id: "log-scale", checked: view.log });
  slider.addEventListener("input", () => {
    view.smoothing = Number(slider.value);
    value.textContent = view.smoothing.toFixed(2);
    writeParams({ smooth: view.smoothing || "" });
    for (const id of drawn.keys()) render(id);
  });
  log.addEventListener("change", () => {
    view.log = log.checked;
    writeParams({ log: view.log });
    for (const id of drawn.keys()) render(id);
  });
  box.replaceChildren(el("label", {}, "smoothing ", slider, " ", value),
    el("label", {}, log, " log scale (losses)"));
}

for (const query of [DARK, PHONE]) {
  if (query && query.addEventListener) query.addEventListener("change", () => { for (const id of drawn.keys()) render(id); });
}

// --- runs -------------------------------------------------------------------------------------

function runsPage() {
  const params = new URLSearchParams(location.search);
  const state = { rows: [], key: params.get("sort") || "created", descending: params.has("sort") ? params.get("desc") === "1" : true,
    selected: new Set() };
  const filter = document.getElementById("filter");
  const statusFilter = document.getElementById("status-filter");
  const tagFilter = document.getElementById("tag-filter");
  const compare = document.getElementById("compare");
  const tbody = document.querySelector("#runs tbody");
  filter.value = params.get("q") || "";
  const wanted = { status: params.get("status") || "", tag: params.get("tag") || "" };

  const remember = () => writeParams({ q: filter.value.trim(), status: statusFilter.value, tag: tagFilter.value,
    sort: state.key === "created" && state.descending ? "" : state.key, desc: state.key === "created" && state.descending ? "" : state.descending });

  const draw = () => {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const status = statusFilter.value, tag = tagFilter.value;
    const shown = state.rows.filter((run) => {
      if (status && run.status !== status) return false;
      if (tag && !run.tags.includes(tag)) return false;
      const text = [run.id, run.name, run.model, run.dataset, run.sweep || "", run.status, ...run.tags].join(" ").toLowerCase();
      return words.every((word) => text.includes(word));
    });
    const sign = state.descending ? -1 : 1;
    shown.sort((a, b) => {
      const x = a[state.key], y = b[state.key];
      if (x === y) return 0;
      if (x === null || x === undefined || x === "") return 1;
      if (y === null || y === undefined || y === "") return -1;
      return (x < y ? -1 : 1) * sign;
    });
    fill(tbody, shown.map((run) => el("tr", { "data-id": run.id, class: run.status === "running" ? "running" : null },
      el("td", {}, el("input", {
        type: "checkbox", "aria-label": `select ${run.id}`, checked: state.selected.has(run.id),
        onchange: (event) => {
          if (event.target.checked) state.selected.add(run.id); else state.selected.delete(run.id);
          compare.disabled = state.selected.size < 2;
        },
      })),
      el("td", { class: "id" }, runLink(run.id)), el("td", { class: "name" }, run.name, " ", tagChips(run.tags)),
      el("td", { class: "opt" }, run.model), el("td", { class: "opt" }, run.dataset), el("td", {}, statusBadge(run.status)),
      el("td", { class: "num opt-phone" }, run.epochs_planned ? `${run.epochs_done}/${run.epochs_planned}` : run.epochs_done),
      el("td", { class: "num" }, run.text.best_val_acc), el("td", { class: "num opt" }, run.text.final_val_acc),
      el("td", { class: "num opt-phone" }, run.text.final_test_acc), el("td", { class: "num opt" }, duration(run.duration_s)),
      el("td", { class: "nowrap opt" }, run.created_text))));
    document.getElementById("count").textContent = `${shown.length} of ${state.rows.length} runs`;
    for (const th of document.querySelectorAll("#runs th[data-key]")) {
      const sorted = th.dataset.key === state.key;
      th.classList.toggle("sorted", sorted);
      th.classList.toggle("descending", sorted && state.descending);
      th.setAttribute("aria-sort", sorted ? (state.descending ? "descending" : "ascending") : "none");
    }
  };

  for (const th of document.querySelectorAll("#runs th[data-key]")) {
    // A button inside each header: reached with Tab, pressed with Enter or Space.
    const button = el("button", { type: "button", class: "sort" }, ...th.childNodes);
    th.replaceChildren(button);
    button.addEventListener("click", () => {
      state.descending = state.key === th.dataset.key ? !state.descending : false;
      state.key = th.dataset.key;
      remember();
      draw();
    });
  }
  filter.addEventListener("input", () => { remember(); draw(); });
  statusFilter.addEventListener("change", () => { remember(); draw(); });
  tagFilter.addEventListener("change", () => { remember(); draw(); });
  compare.addEventListener("click", () => { location.href = compareHref([...state.selected]); });

  const filled = new Set();
  const options = (select, values, noun) => {
    // The address's choice is applied on the first fill only: later polls keep what the user picked
    // ("every status" included).
    const current = filled.has(noun) ? select.value : wanted[noun];
    filled.add(noun);
    select.replaceChildren(el("option", { value: "" }, noun === "tag" ? "every tag" : "every status"),
      ...[...new Set([...values, current].filter(Boolean))].sort().map((v) => el("option", { value: v }, v)));
    select.value = current;
  };

  poll(async () => {
    const data = await getJSON("/api/runs");
    state.rows = data.runs;
    options(statusFilter, data.runs.map((run) => run.status), "status");
    options(tagFilter, data.tags, "tag");
    tagFilter.hidden = data.tags.length === 0 && !tagFilter.value;
    document.getElementById("sweeps").replaceChildren(
      ...(data.sweeps.length ? ["sweeps: "] : []),
      ...data.sweeps.flatMap((name, i) => [i ? ", " : "", el("a", { href: `/sweeps/${encodeURIComponent(name)}` }, name)]));
    draw();
    return data.running > 0;
  });
}

// --- one run ----------------------------------------------------------------------------------

const SPLIT_STYLE = { train: { dash: "dash" }, val: { dash: "solid" }, test: { dash: "dot" } };

function splitTraces(curves, kind, percent) {
  return ["train", "val", "test"].filter((split) => curves[`${split}_${kind}`]).map((split) => ({
    x: curves.epoch, y: curves[`${split}_${kind}`].map((v) => (percent && v !== null ? 100 * v : v)),
    name: split, line: SPLIT_STYLE[split],
  }));
}

function runPage() {
  const runId = document.body.dataset.run;
  let inspected = null;
  curveControls();
  const base = `/api/runs/${encodeURIComponent(runId)}`;
  document.getElementById("downloads").replaceChildren("download its epochs: ",
    el("a", { href: `${base}/epochs.csv`, download: "" }, "CSV"), " · ", el("a", { href: `${base}/epochs.json`, download: "" }, "JSON"));
  poll(async () => {
    const data = await getJSON(base);
    const run = data.run;
    document.getElementById("status").replaceChildren(statusBadge(run.status));
    const running = run.status === "running";
    const facts = [
      ["model", `${run.model} on ${run.dataset}, seed ${run.seed}`],
      ["epochs", run.epochs_planned ? `${run.epochs_done} of ${run.epochs_planned}` : run.epochs_done],
      ["best val acc", run.best_val_acc === null ? null : `${run.text.best_val_acc}` + (run.best_epoch && !running ? ` (epoch ${run.best_epoch})` : "")],
      ["final val acc", run.final_val_acc === null ? null : run.text.final_val_acc + (running ? " (last epoch so far)" : "")],
      ["test acc", run.final_test_acc === null ? null : run.text.final_test_acc],
      ["time", duration(run.duration_s)],
      ["parameters", run.n_params === null ? null : run.n_params.toLocaleString("en")],
      ["device", run.device], ["host", run.host], ["created", run.created_text],
      ["error", run.error],
    ];
    const summary = document.getElementById("summary");
    summary.replaceChildren(...facts.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k === "error" ? "error" : null }, v)]));
    if (run.tags.length) summary.append(el("dt", {}, "tags"), el("dd", {}, tagChips(run.tags)));
    if (run.sweep) {
      summary.append(el("dt", {}, "sweep"), el("dd", {},
        el("a", { href: `/sweeps/${encodeURIComponent(run.sweep)}` }, run.sweep), ` trial ${run.trial}`));
    }
    const loss = lossName(data.loss);
    chart("loss-chart", splitTraces(data.curves, "loss", false), { title: { text: `loss (${loss})` },
      yaxis: { title: { text: `${loss} loss` } } }, { loggable: true });
    chart("acc-chart", splitTraces(data.curves, "acc", true), { title: { text: "accuracy" },
      yaxis: { title: { text: "accuracy (%)" } } });
    const domainChart = document.getElementById("domain-chart");
    domainChart.hidden = data.domains.length === 0;
    if (data.domains.length) {
      const traces = [];
      data.domains.forEach((domain, i) => {
        for (const split of ["val", "test"]) {
          const values = data.domain_curves[`${split}/${domain}_acc`];
          if (values) traces.push({ x: data.domain_curves.epoch, y: values.map((v) => (v === null ? null : 100 * v)),
            name: `${domain} ${split}`, line: { color: COLORS[i % COLORS.length], ...SPLIT_STYLE[split] } });
        }
      });
      chart("domain-chart", traces, { title: { text: "accuracy per domain" }, yaxis: { title: { text: "accuracy (%)" } } });
    }
    document.getElementById("outcome").textContent = data.diagnosis.outcome;
    const findings = document.getElementById("findings");
    findings.hidden = data.diagnosis.findings.length === 0;
    fill(findings.querySelector("tbody"), data.diagnosis.findings.map((f) =>
      el("tr", {}, el("td", {}, f.kind), el("td", {}, f.evidence), el("td", {}, f.advice))));
    fill(document.querySelector("#config tbody"), data.config.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    document.getElementById("artifacts").replaceChildren(...(data.artifacts.length ? data.artifacts.map((a) =>
      el("li", {}, `${a.kind}: `, a.url ? el("a", { href: a.url }, a.name) : a.path)) : [el("li", { class: "muted" }, "none")]));
    const active = running || run.status === "created";
    const stamp = `${data.has_checkpoint}-${run.status}`;
    if (stamp !== inspected && !active) {
      inspected = stamp;
      loadInspection(runId, data.has_checkpoint);
    } else if (active) {
      document.getElementById("inspect-note").textContent = "the model's figures are drawn when the run has finished";
    }
    return running;
  });
}

async function loadInspection(runId, hasCheckpoint) {
  const note = document.getElementById("inspect-note");
  const box = document.getElementById("inspect");
  if (!hasCheckpoint) {
    note.textContent = "this run has no checkpoint in the store";
    box.replaceChildren();
    return;
  }
  note.textContent = "drawing filters, feature maps and the confusion matrix…";
  const data = await getJSON(`/api/runs/${encodeURIComponent(runId)}/figures`);
  note.textContent = data.problem || "";
  box.replaceChildren(...data.figures.map((figure, i) => el("figure", {},
    el("img", { src: `/api/runs/${encodeURIComponent(runId)}/figures/${i}.png`, alt: figure.title, loading: "lazy" }),
    el("figcaption", {}, figure.title))));
}

// --- one sweep --------------------------------------------------------------------------------

const STATES = ["done", "running", "pending", "interrupted", "interrupted (process gone)", "failed", "pruned", "diverged"];
const CELL_COLUMNS = [["done", ["done"]], ["running", ["running"]], ["pending", ["pending"]],
  ["interrupted", ["interrupted", "interrupted (process gone)"]], ["failed", ["failed"]], ["pruned", ["pruned"]],
  ["diverged", ["diverged"]]];

function studyPage() {
  const name = document.body.dataset.sweep;
  const url = `/api/sweeps/${encodeURIComponent(name)}`;
  let figuresKey = null;
  curveControls();
  document.getElementById("downloads").replaceChildren("download every run's settings and results: ",
    el("a", { href: `${url}/results.csv`, download: "" }, "CSV"), " · ", el("a", { href: `${url}/results.json`, download: "" }, "JSON"));
  poll(async () => {
    const data = await getJSON(url);
    const counts = data.counts;
    const count = (state) => counts[state] || 0;
    const finished = count("done") + count("failed") + count("pruned") + count("diverged");
    document.getElementById("progress-bar").style.width = `${data.total ? (100 * finished) / data.total : 0}%`;
    document.getElementById("counts").replaceChildren(`${data.total} runs: `,
      ...STATES.filter((s) => count(s)).flatMap((s, i) => [i ? ", " : "", el("span", { class: `state-${s.split(" ")[0]}` }, `${count(s)} ${s}`)]));
    drawAnalysis(data.analysis);
    if (data.cells_metric) document.querySelector("#cells-metric").textContent = `${data.cells_metric} (mean ± sd)`;
    fill(document.querySelector("#cells tbody"), data.cells.map((cell) => el("tr", {},
      el("td", {}, cell.label),
      ...CELL_COLUMNS.map(([column, states]) => {
        const n = states.reduce((sum, s) => sum + (cell.states[s] || 0), 0);
        return el("td", { class: `num state-${column}` }, n || "");
      }),
      el("td", { class: "num" }, cell.text),
      el("td", { class: "ids" }, cell.runs.filter((run) => run.id).flatMap((run, i) => [i ? " " : "", runLink(run.id),
        run.state === "running" ? el("span", { class: "state-running" }, ` (epoch ${run.epochs}${run.planned ? "/" + run.planned : ""})`) : ""])))));
    if (data.figures_key !== figuresKey) {
      figuresKey = data.figures_key;
      loadEffects(url, figuresKey);
    }
    return count("running") > 0;
  });
}

function drawAnalysis(analysis) {
  if (!analysis) return;
  const metric = analysis.metric;
  const scale = (v) => (metric.percent && v !== null ? 100 * v : v);
  const yTitle = metric.percent ? `${metric.column} (%)` : metric.column;
  const cellIndex = new Map();  // one colour per configuration, in order of appearance
  const traces = analysis.runs.map((run) => {
    const first = !cellIndex.has(run.cell);
    if (first) cellIndex.set(run.cell, cellIndex.size);
    const index = cellIndex.get(run.cell);
    return {
      x: run.epoch, y: run.value.map(scale),
      name: run.cell || run.label, legendgroup: run.cell, showlegend: first,
      line: { color: COLORS[index % COLORS.length], width: 1.5 }, marker: { color: COLORS[index % COLORS.length] },
      text: run.label, hoverinfo: "x+y+text",
    };
  });
  chart("curves-chart", traces, { title: { text: `${metric.column} per epoch, one line per run` }, height: 380,
    yaxis: { title: { text: yTitle } } }, { loggable: !metric.percent });
  drawSlices(analysis, scale, metric.percent ? `${metric.description} (%)` : metric.description);
  document.getElementById("method").textContent = analysis.method;
  document.getElementById("noise").textContent = analysis.noise_note || "";
  fill(document.querySelector("#ranking tbody"), analysis.ranking.map((row) => el("tr", { class: row.verdict.replace(" ", "-") },
    el("td", {}, row.rank), el("td", {}, row.label), el("td", { class: "num" }, row.mean), el("td", { class: "num" }, row.sd),
    el("td", { class: "num" }, row.ci), el("td", { class: "num" }, row.n), el("td", {}, row.against),
    el("td", {}, row.runs.length > 1 ? el("a", { href: compareHref(row.runs), class: "compare" }, "compare seeds") : ""))));
  document.getElementById("conclusions").replaceChildren(...analysis.conclusions.map((text) => el("li", {}, text)));
  document.getElementById("best").replaceChildren(...(analysis.best_run
    ? ["Best run of the best configuration: ", runLink(analysis.best_run), " (its curves, diagnosis and the model from the inside)."] : []));
}

// The slice view: the metric of every run against each setting the sweep varies (a dot per run).
function drawSlices(analysis, scale, yTitle) {
  const box = document.getElementById("slices");
  const note = document.getElementById("slices-note");
  const runs = analysis.runs.filter((run) => run.result !== null);
  note.textContent = analysis.varying.length ? `${analysis.metric.description}: one dot per finished run` : "no setting varies";
  const ids = analysis.varying.map((key, i) => `slice-${i}`);
  if (box.children.length !== ids.length) box.replaceChildren(...ids.map((id) => el("div", { id, class: "chart slice" })));
  const { fg, line } = colours();
  analysis.varying.forEach((key, i) => {
    const node = document.getElementById(ids[i]);
    if (!window.Plotly) return;
    const order = [...new Set(analysis.runs.map((run) => run.settings[key]))];
    Plotly.react(node, [{
      type: "scatter", mode: "markers", x: runs.map((run) => run.settings[key]), y: runs.map((run) => scale(run.result)),
      text: runs.map((run) => `${run.id} ${run.cell}`), hoverinfo: "x+y+text", marker: { size: 9, opacity: 0.75, color: COLORS[i % COLORS.length] },
    }], {
      margin: { l: 60, r: 15, t: 35, b: 45 }, height: 260, title: { text: key },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg },
      xaxis: { type: "category", categoryorder: "array", categoryarray: order, title: { text: key }, gridcolor: line },
      yaxis: { title: { text: yTitle }, gridcolor: line, zerolinecolor: line },
    }, PLOT_CONFIG);
  });
}

async function loadEffects(url, key) {
  const data = await getJSON(`${url}/figures?v=${encodeURIComponent(key)}`);
  document.getElementById("effects").replaceChildren(...(data.figures.length ? data.figures.map((figure, i) => el("figure", {},
    el("img", { src: `${url}/figures/${i}.png?v=${encodeURIComponent(data.key)}`, alt: figure.title }),
    el("figcaption", {}, el("strong", {}, figure.title), " ", figure.caption)))
    : [el("p", { class: "muted" }, "no setting with two or more values has finished runs yet")]));
}

// --- compare ----------------------------------------------------------------------------------

function comparePage() {
  const refs = document.body.dataset.runs;
  curveControls();
  poll(async () => {
    const data = await getJSON(`/api/compare?runs=${encodeURIComponent(refs)}`);
    // Runs trained with different loss functions: each loss curve over its own epoch-1 value.
    const relative = (values) => {
      const first = values.find((v) => v !== null && v !== undefined);
      return first ? values.map((v) => (v === null ? null : v / first)) : values;
    };
    const traces = (kind, percent) => data.runs.flatMap((run, i) => ["train", "val"].filter((s) => run.curves[`${s}_${kind}`]).map((s) => {
      let y = run.curves[`${s}_${kind}`];
      if (percent) y = y.map((v) => (v !== null ? 100 * v : v));
      if (kind === "loss" && data.normalise_loss) y = relative(y);
      return { x: run.curves.epoch, y, name: `${run.id} ${s}`, text: `${run.label} (${lossName(run.loss)})`,
        hoverinfo: "x+y+text", line: { color: COLORS[i % COLORS.length], ...SPLIT_STYLE[s] },
        marker: { color: COLORS[i % COLORS.length] } };
    }));
    chart("cmp-acc-chart", traces("acc", true), { title: { text: "accuracy" }, yaxis: { title: { text: "accuracy (%)" } } });
    const losses = data.losses.map(lossName).join(", ");
    chart("cmp-loss-chart", traces("loss", false), data.normalise_loss
      ? { title: { text: "loss ÷ its epoch-1 value" }, yaxis: { title: { text: "loss ÷ epoch-1 loss" } } }
      : { title: { text: `loss (${losses})` }, yaxis: { title: { text: `${losses} loss` } } }, { loggable: true });
    document.getElementById("loss-note").textContent = data.normalise_loss
      ? `These runs minimise different losses (${losses}): each loss curve is drawn over its own epoch-1 value, `
        + "as the report and study.plot() draw them, so their falls compare." : "";
    const header = el("tr", {}, el("th", {}, ""),
      ...data.runs.map((run) => el("th", {}, runLink(run.id, run.label), " ", statusBadge(run.status))));
    const table = document.getElementById("differ");
    table.querySelector("thead").replaceChildren(header);
    const rows = [["seed", ...data.runs.map((run) => String(run.seed))], ...data.settings];
    fill(table.querySelector("tbody"), rows.map(([key, ...values]) => el("tr", {}, el("th", {}, key), ...values.map((v) => el("td", {}, v)))));
    const metrics = document.getElementById("final");
    metrics.querySelector("thead").replaceChildren(header.cloneNode(true));
    fill(metrics.querySelector("tbody"), data.metrics.map(([key, ...values]) => el("tr", {}, el("th", {}, key),
      ...values.map((v) => el("td", { class: key === "status" ? null : "num" }, v)))));
    return data.runs.some((run) => run.status === "running");
  });
}

const PAGES = { runs: runsPage, run: runPage, study: studyPage, compare: comparePage };
(PAGES[document.body.dataset.page] || (() => {}))();
