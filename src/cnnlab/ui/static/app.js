// cnnlab ui: fetches each page's JSON from this server and draws it. Every piece of run text goes
// into the page through textContent or attribute values, never as HTML.
"use strict";

const POLL_MS = Number(document.body.dataset.pollMs) || 2000;
const IDLE_POLL_MS = 5 * POLL_MS;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];
const PLOT_CONFIG = { displaylogo: false, responsive: true };

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
// trains), else every IDLE_POLL_MS (a sweep may be started again).
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

const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(2) + "%");
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return seconds.toFixed(1) + "s";
  const minutes = Math.floor(Math.round(seconds) / 60);
  const secs = String(Math.round(seconds) % 60).padStart(2, "0");
  if (minutes < 60) return `${minutes}m ${secs}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
const statusBadge = (status) => el("span", { class: `status s-${status}` }, status);
const runLink = (id, text) => el("a", { href: `/runs/${encodeURIComponent(id)}` }, text ?? id);
const compareHref = (ids) => "/compare?runs=" + ids.map(encodeURIComponent).join(",");

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function chart(id, traces, layout) {
  const node = document.getElementById(id);
  if (!node || !window.Plotly) return;
  Plotly.react(node, traces, {
    margin: { l: 55, r: 15, t: 35, b: 40 }, height: 340,
    legend: { orientation: "h", x: 0, y: -0.3, yanchor: "top" },
    xaxis: { title: { text: "epoch" } }, ...layout,
  }, PLOT_CONFIG);
}

// --- runs -------------------------------------------------------------------------------------

function runsPage() {
  const state = { rows: [], key: "created", descending: true, selected: new Set() };
  const filter = document.getElementById("filter");
  const statusFilter = document.getElementById("status-filter");
  const compare = document.getElementById("compare");
  const tbody = document.querySelector("#runs tbody");

  const draw = () => {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const wanted = statusFilter.value;
    const shown = state.rows.filter((run) => {
      if (wanted && run.status !== wanted) return false;
      const text = [run.id, run.name, run.model, run.dataset, run.sweep || "", run.status].join(" ").toLowerCase();
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
      el("td", {}, runLink(run.id)), el("td", { class: "name" }, run.name), el("td", {}, run.model),
      el("td", { class: "nowrap" }, run.dataset), el("td", {}, statusBadge(run.status)),
      el("td", { class: "num" }, run.epochs_planned ? `${run.epochs_done}/${run.epochs_planned}` : run.epochs_done),
      el("td", { class: "num" }, pct(run.best_val_acc)), el("td", { class: "num" }, pct(run.final_val_acc)),
      el("td", { class: "num" }, pct(run.final_test_acc)), el("td", { class: "num" }, duration(run.duration_s)),
      el("td", { class: "nowrap" }, when(run.created)))));
    document.getElementById("count").textContent = `${shown.length} of ${state.rows.length} runs`;
    for (const th of document.querySelectorAll("#runs th[data-key]")) {
      th.classList.toggle("sorted", th.dataset.key === state.key);
      th.classList.toggle("descending", th.dataset.key === state.key && state.descending);
    }
  };

  for (const th of document.querySelectorAll("#runs th[data-key]")) {
    th.addEventListener("click", () => {
      state.descending = state.key === th.dataset.key ? !state.descending : false;
      state.key = th.dataset.key;
      draw();
    });
  }
  filter.addEventListener("input", draw);
  statusFilter.addEventListener("change", draw);
  compare.addEventListener("click", () => { location.href = compareHref([...state.selected]); });

  poll(async () => {
    const data = await getJSON("/api/runs");
    state.rows = data.runs;
    const statuses = [...new Set(data.runs.map((run) => run.status))].sort();
    const known = [...statusFilter.options].map((option) => option.value);
    for (const status of statuses) if (!known.includes(status)) statusFilter.append(el("option", { value: status }, status));
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
    name: split, mode: "lines+markers", line: SPLIT_STYLE[split],
  }));
}

function runPage() {
  const runId = document.body.dataset.run;
  let inspected = null;
  poll(async () => {
    const data = await getJSON(`/api/runs/${encodeURIComponent(runId)}`);
    const run = data.run;
    document.getElementById("status").replaceChildren(statusBadge(run.status));
    const facts = [
      ["model", `${run.model} on ${run.dataset}, seed ${run.seed}`],
      ["epochs", run.epochs_planned ? `${run.epochs_done} of ${run.epochs_planned}` : run.epochs_done],
      ["best val acc", run.best_val_acc === null ? null : `${pct(run.best_val_acc)} (epoch ${run.best_epoch})`],
      ["final val acc", run.final_val_acc === null ? null : pct(run.final_val_acc)],
      ["test acc", run.final_test_acc === null ? null : pct(run.final_test_acc)],
      ["time", duration(run.duration_s)],
      ["parameters", run.n_params === null ? null : run.n_params.toLocaleString()],
      ["device", run.device], ["host", run.host], ["created", when(run.created)],
      ["error", run.error],
    ];
    const summary = document.getElementById("summary");
    summary.replaceChildren(...facts.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k === "error" ? "error" : null }, v)]));
    if (run.sweep) {
      summary.append(el("dt", {}, "sweep"), el("dd", {},
        el("a", { href: `/sweeps/${encodeURIComponent(run.sweep)}` }, run.sweep), ` trial ${run.trial}`));
    }
    chart("loss-chart", splitTraces(data.curves, "loss", false), { title: { text: "loss" } });
    chart("acc-chart", splitTraces(data.curves, "acc", true), { title: { text: "accuracy (%)" } });
    const domainChart = document.getElementById("domain-chart");
    domainChart.hidden = data.domains.length === 0;
    if (data.domains.length) {
      const traces = [];
      data.domains.forEach((domain, i) => {
        for (const split of ["val", "test"]) {
          const values = data.domain_curves[`${split}/${domain}_acc`];
          if (values) traces.push({ x: data.domain_curves.epoch, y: values.map((v) => (v === null ? null : 100 * v)),
            name: `${domain} ${split}`, mode: "lines+markers", line: { color: COLORS[i % COLORS.length], ...SPLIT_STYLE[split] } });
        }
      });
      chart("domain-chart", traces, { title: { text: "accuracy per domain (%)" } });
    }
    document.getElementById("outcome").textContent = data.diagnosis.outcome;
    const findings = document.getElementById("findings");
    findings.hidden = data.diagnosis.findings.length === 0;
    fill(findings.querySelector("tbody"), data.diagnosis.findings.map((f) =>
      el("tr", {}, el("td", {}, f.kind), el("td", {}, f.evidence), el("td", {}, f.advice))));
    fill(document.querySelector("#config tbody"), data.config.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    document.getElementById("artifacts").replaceChildren(...(data.artifacts.length ? data.artifacts.map((a) =>
      el("li", {}, `${a.kind}: `, a.url ? el("a", { href: a.url }, a.name) : a.path)) : [el("li", { class: "muted" }, "none")]));
    const active = run.status === "running" || run.status === "created";
    const stamp = `${data.has_checkpoint}-${run.status}`;
    if (stamp !== inspected && !active) {
      inspected = stamp;
      loadInspection(runId, data.has_checkpoint);
    } else if (active) {
      document.getElementById("inspect-note").textContent = "the model's figures are drawn when the run has finished";
    }
    return active;
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

const STATES = ["done", "running", "pending", "interrupted", "failed", "pruned", "diverged"];

function studyPage() {
  const name = document.body.dataset.sweep;
  const url = `/api/sweeps/${encodeURIComponent(name)}`;
  let figuresKey = null;
  poll(async () => {
    const data = await getJSON(url);
    const counts = data.counts;
    const finished = counts.done + counts.failed + counts.pruned + counts.diverged;
    document.getElementById("progress-bar").style.width = `${data.total ? (100 * finished) / data.total : 0}%`;
    document.getElementById("counts").replaceChildren(`${data.total} runs: `,
      ...STATES.filter((s) => counts[s]).flatMap((s, i) => [i ? ", " : "", el("span", { class: `state-${s}` }, `${counts[s]} ${s}`)]));
    drawAnalysis(data.analysis);
    if (data.cells_metric) document.querySelector("#cells-metric").textContent = `${data.cells_metric} (mean ± sd)`;
    fill(document.querySelector("#cells tbody"), data.cells.map((cell) => el("tr", {},
      el("td", {}, cell.label),
      ...["done", "running", "pending", "failed", "pruned", "diverged"].map((s) =>
        el("td", { class: `num state-${s}` }, cell.states[s] || "")),
      el("td", { class: "num" }, cell.mean === null ? "–" : `${pct(cell.mean)}${cell.std === null ? "" : " ± " + (100 * cell.std).toFixed(2)}`),
      el("td", { class: "ids" }, cell.runs.filter((run) => run.id).flatMap((run, i) => [i ? " " : "", runLink(run.id),
        run.state === "running" ? el("span", { class: "state-running" }, ` (epoch ${run.epochs}${run.planned ? "/" + run.planned : ""})`) : ""])))));
    if (data.figures_key !== figuresKey) {
      figuresKey = data.figures_key;
      loadEffects(url, figuresKey);
    }
    return counts.running + counts.pending + counts.interrupted > 0;
  });
}

function drawAnalysis(analysis) {
  if (!analysis) return;
  const metric = analysis.metric;
  const cellIndex = new Map();  // one colour per configuration, in order of appearance
  const traces = analysis.runs.map((run) => {
    const first = !cellIndex.has(run.cell);
    if (first) cellIndex.set(run.cell, cellIndex.size);
    const index = cellIndex.get(run.cell);
    return {
      x: run.epoch, y: run.value.map((v) => (metric.percent && v !== null ? 100 * v : v)),
      name: run.cell || run.label, legendgroup: run.cell, showlegend: first, mode: "lines",
      line: { color: COLORS[index % COLORS.length], width: 1.5 }, text: run.label, hoverinfo: "x+y+text",
    };
  });
  chart("curves-chart", traces, {
    title: { text: `${metric.column} per epoch, one line per run` }, height: 380,
    yaxis: { title: { text: metric.percent ? `${metric.column} (%)` : metric.column } },
  });
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
  poll(async () => {
    const data = await getJSON(`/api/compare?runs=${encodeURIComponent(refs)}`);
    const traces = (kind, percent) => data.runs.flatMap((run, i) => ["train", "val"].filter((s) => run.curves[`${s}_${kind}`]).map((s) => ({
      x: run.curves.epoch, y: run.curves[`${s}_${kind}`].map((v) => (percent && v !== null ? 100 * v : v)),
      name: `${run.id} ${s}`, text: run.label, hoverinfo: "x+y+text", mode: "lines",
      line: { color: COLORS[i % COLORS.length], ...SPLIT_STYLE[s] },
    })));
    chart("cmp-acc-chart", traces("acc", true), { title: { text: "accuracy (%)" } });
    chart("cmp-loss-chart", traces("loss", false), { title: { text: "loss" } });
    const table = document.getElementById("differ");
    table.querySelector("thead").replaceChildren(el("tr", {}, el("th", {}, "setting"),
      ...data.runs.map((run) => el("th", {}, runLink(run.id, run.label), " ", statusBadge(run.status)))));
    const rows = [["seed", ...data.runs.map((run) => String(run.seed))], ...data.settings];
    fill(table.querySelector("tbody"), rows.map(([key, ...values]) => el("tr", {}, el("th", {}, key), ...values.map((v) => el("td", {}, v)))));
    return data.runs.some((run) => run.status === "running");
  });
}

const PAGES = { runs: runsPage, run: runPage, study: studyPage, compare: comparePage };
(PAGES[document.body.dataset.page] || (() => {}))();
