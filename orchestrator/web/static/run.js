/* The run page: live V/I/T (zoomable, decimated on the server), capacity and CE per cycle,
   impedance with fits, events, commands, report and downloads. */
"use strict";
(function () {
  const L = window.labrig;
  const runId = document.body.dataset.run;
  const base = "/api/runs/" + encodeURIComponent(runId);
  const R = (L.run = { info: null, t0: null, plot: null, data: [[], [], [], []], zoomed: null,
    cycles: [], events: [], seqs: new Set(), cycplot: null, eisplot: null, loaded: 0 });
  // axes and series in the theme's colours (app.css); a new theme draws the page again
  let AX = null;
  const C = {};
  function colours() {
    AX = { stroke: L.css("--dim"), grid: { stroke: L.css("--grid"), width: 1 }, ticks: { stroke: L.css("--line"), width: 1 } };
    for (const k of ["v", "i", "t", "dis", "ch", "ce", "fit"]) C[k] = L.css("--c-" + k);
  }
  const ENDED = ["finished", "aborted", "failed"];
  let zoomTimer = null;

  const width = (el) => Math.max(280, el.clientWidth || 600);
  const xOf = (t) => (R.t0 === null ? t / 3600 : R.t0 + t);
  // drawn: the V/I/T plot, the cycle plot and the events (bench/web.py reads the mark)
  const ready = () => {
    if (++R.loaded < 3 || document.body.dataset.ready) return;
    document.body.dataset.ready = "1";
    performance.mark("labrig-ready");
  };

  // ---------------------------------------------------------------- facts and commands
  function facts(info) {
    R.info = info;
    if (R.t0 === null && info.t0) R.t0 = info.t0;
    const live = info.live || {};
    const state = live.state && live.state !== "idle" ? live.state : info.state || "unknown";
    const badge = L.$("#state");
    badge.textContent = state;
    badge.className = "st " + state;
    const cell = info.cell || {};
    const items = [
      ["protocol", info.protocol], ["cell / sample", cell.cell_id || cell.sample_id || live.cell_id],
      ["station / position", [info.station || live.station, info.position || live.channel].filter(Boolean).join(" / ")],
      ["started", L.time(info.t0 || info.created)],
    ];
    const ended = ENDED.includes(state) || info.ended;
    if (ended) {
      items.push(["ended", L.time(info.ended)], ["cycles", info.cycles ?? live.cycle ?? "–"]);
    } else {  // what goes on now
      items.push(["cycle", live.cycle ?? "–"], ["step", live.step || "–"],
        ["V", L.num(live.voltage_V, 4)], ["I (mA)", L.num(live.current_A == null ? null : live.current_A * 1000, 3)],
        ["T (°C)", L.num(live.temperature_C, 1)],
        ["ETA", live.eta_s ? `${L.duration(live.eta_s)} (${L.clock(Date.now() / 1000 + live.eta_s)})` : "–"]);
    }
    if (live.last_event) items.push(["last event", live.last_event]);
    if (info.lab) items.push(["submitted", `${L.time(info.lab.submitted)} by ${info.lab.submitted_by}`]);
    if (info.lab && info.lab.agent_online === false && !ENDED.includes(state)) items.push(["agent", `${info.station} offline`]);
    if (info.reason) items.push(["reason", info.reason]);
    if (info.simulated) items.push(["instruments", "simulated (dry run)"]);
    L.$("#facts").replaceChildren(...items.map(([k, v]) => L.el("div", {}, L.el("b", { text: k }), String(v ?? "–"))));
    actions(state, live);
  }
  function actions(state, live) {
    const box = L.$("#actions");
    box.replaceChildren();
    const going = !ENDED.includes(state) && state !== "unknown" && state !== "idle";
    if (!going) return;
    if (!L.canCommand) {
      box.append(L.el("span", { class: "dim", text: L.auth ? `Signed in as ${L.role}${L.roleNote ? ` (${L.roleNote})` : ""}: only operators command runs.`
        : "Commands need a signed-in operator (no users configured)." }));
      return;
    }
    const where = [live.station, live.channel].filter(Boolean).join(" / ") || "its position";
    const btn = (id, label, cmd, danger, text) => box.append(L.el("button", { id, class: danger ? "danger" : "", text: label,
      onclick: () => command(cmd, label, text, danger) }));
    if (state === "running" || state === "waiting" || state === "starting") btn("cmd-pause", "Pause", "pause", false,
      `Pause ${runId} on ${where}? It pauses at its next safe point (the cycler at rest).`);
    if (state === "paused") btn("cmd-continue", "Continue", "continue", false, `Continue ${runId} on ${where}?`);
    btn("cmd-abort", "Abort", "abort", true,
      `Abort ${runId} on ${where}? Every instrument goes to its safe state. This cannot be undone.`);
  }
  async function command(cmd, label, text, danger) {
    const ok = await L.confirm(label + " run", text, label + " run", danger);
    if (!ok) return;
    const d = await L.api(base + "/command", { method: "POST", body: { command: cmd, note: ok.note, confirm: true } });
    L.message(L.$("#cmdmsg"), d.accepted, `${label}: ${d.accepted ? "accepted" : "refused"} – ${d.reason || d.error || ""}`);
  }

  // ---------------------------------------------------------------- V, I, T plot
  function arrays(d) {
    const x = [], v = [], i = [], t = [];
    for (let k = 0; k < d.t.length; k++) { x.push(xOf(d.t[k])); v.push(d.V[k]); i.push(d.I[k] === null ? null : d.I[k] * 1000); t.push(d.T[k]); }
    for (const p of d.live || []) {
      if (x.length && xOf(p[0]) <= x[x.length - 1]) continue;
      x.push(xOf(p[0])); v.push(p[1]); i.push(p[2] === null ? null : p[2] * 1000); t.push(p[3]);
    }
    return [x, v, i, t];
  }
  // a run that has just begun: at least a minute wide (hours when x is in hours)
  function spanAtLeast(min, max) {
    const least = R.t0 === null ? 1 / 60 : 60;
    if (min === null || max === null) return [min, max];
    return max - min >= least ? [min, max] : [min, min + least];
  }
  function note(d) {
    if (d) R.stored = d.stored;
    const live = R.data[0].length - (d ? d.shown : R.shown || 0);
    if (d) { R.shown = d.shown; R.decimated = d.decimated; }
    L.$("#plotnote").textContent = `${(R.stored || 0).toLocaleString()} stored records, ` +
      `${R.data[0].length.toLocaleString()} points drawn` + (R.decimated ? " (min/max per pixel column)" : "") +
      (live > 0 ? `, ${live} live readings` : "");
  }
  function setData(data, reset) {
    R.data = data;
    R.plot.setData(data, reset);
    if (reset) oneMinute();
    L.$("#plot").dataset.points = data[0].length;
  }
  // uPlot spreads a single point over years: show its first minute instead
  function oneMinute() {
    const x = R.data[0];
    if (x.length !== 1) return;
    const [min, max] = spanAtLeast(x[0], x[0]);
    R.plot.setScale("x", { min, max });
  }
  function makePlot(data) {
    const el = L.$("#plot");
    const hasT = data[0].length < 2 || data[3].some((v) => v !== null);
    const opts = {
      width: width(el), height: Math.min(360, Math.max(240, innerHeight * 0.42)),
      scales: { x: { time: R.t0 !== null, range: (u, min, max) => spanAtLeast(min, max) }, V: {}, mA: {}, C: {} },
      series: [
        { label: R.t0 === null ? "h" : "time", value: (u, v) => (v == null ? "–" : R.t0 === null ? L.num(v, 3) + " h"
          : `${L.time(v)} (+${L.duration(v - R.t0)})`) },
        { label: "V", scale: "V", stroke: C.v, width: 1.25, value: (u, v) => L.num(v, 4) },
        { label: "I (mA)", scale: "mA", stroke: C.i, width: 1, value: (u, v) => L.num(v, 3) },
        { label: "T (°C)", scale: "C", stroke: C.t, width: 1, show: hasT, value: (u, v) => L.num(v, 1) },
      ],
      axes: [
        Object.assign({}, AX),
        Object.assign({}, AX, { scale: "V", label: "V", labelSize: 18, size: 52 }),
        Object.assign({}, AX, { scale: "mA", label: "mA", labelSize: 18, side: 1, grid: { show: false }, size: 56 }),
        Object.assign({}, AX, { scale: "C", label: "°C", labelSize: 18, side: 1, grid: { show: false }, show: hasT, size: 44 }),
      ],
      // the page zooms itself (drag: setScale false) so it knows a zoom from a new reading
      cursor: { drag: { x: true, y: false, setScale: false }, bind: { dblclick: () => () => { overview(); return null; } } },
      hooks: { setSelect: [(u) => {
        if (u.select.width < 4) return;
        const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        zoomTo(min, max);
      }] },
    };
    R.data = data;
    R.plot = new uPlot(opts, data, el);
    oneMinute();
    el.dataset.points = data[0].length;
  }
  function zoomTo(min, max) {
    R.zoomed = { min, max };
    R.plot.setScale("x", { min, max });
    clearTimeout(zoomTimer);
    zoomTimer = setTimeout(async () => {
      const toRun = (x) => (R.t0 === null ? x * 3600 : x - R.t0);
      const n = Math.round(width(L.$("#plot")));
      const d = await L.api(`${base}/series?lo=${toRun(min)}&hi=${toRun(max)}&n=${n}`);
      if (!d.t || !R.zoomed) return;
      setData(arrays(d), false);
      note(d);
    }, 150);
  }
  const seriesUrl = () => `${base}/series?n=${Math.round(width(L.$("#plot")))}`;
  async function overview(asked) {
    R.zoomed = null;
    const d = await (asked || L.api(seriesUrl()));
    if (!d.t) { L.$("#plotnote").textContent = d.error || "no records"; return d; }
    const data = arrays(d);
    if (!R.plot) makePlot(data); else setData(data, true);
    note(d);
    return d;
  }
  function addPoints(points) {
    if (!points.length || !R.plot) return;
    const [x, v, i, t] = R.data;
    for (const p of points) {
      const xp = xOf(p[0]);
      if (x.length && xp <= x[x.length - 1]) continue;
      x.push(xp); v.push(p[1]); i.push(p[2] === null ? null : p[2] * 1000); t.push(p[3]);
    }
    if (x.length > 30000 && !R.zoomed) { overview(); return; }
    setData(R.data, !R.zoomed);
    note(null);
  }

  // ---------------------------------------------------------------- cycles
  // the plotted fields come as columns (?fields=plot); the page keeps rows (a live
  // cycle_ended event adds one)
  function cycleRows(d) {
    if (d.cycles) return d.cycles;
    const cols = d.columns || {}, keys = Object.keys(cols), rows = [];
    for (let k = 0; k < (d.count || 0); k++) {
      const r = {};
      for (const f of keys) r[f] = cols[f][k];
      rows.push(r);
    }
    return rows;
  }
  function cycleData() {
    const rows = R.cycles.filter((r) => r.cycle !== null && r.cycle !== undefined).sort((a, b) => a.cycle - b.cycle);
    const specific = rows.some((r) => r.discharge_capacity_mAh_g !== null && r.discharge_capacity_mAh_g !== undefined);
    const dk = specific ? "discharge_capacity_mAh_g" : "discharge_capacity_mAh";
    const ck = specific ? "charge_capacity_mAh_g" : "charge_capacity_mAh";
    return { unit: specific ? "mAh/g" : "mAh",
      data: [rows.map((r) => r.cycle), rows.map((r) => r[dk] ?? null), rows.map((r) => r[ck] ?? null),
        rows.map((r) => r.coulombic_efficiency_pct ?? null)] };
  }
  function drawCycles() {
    const el = L.$("#cycplot");
    const { unit, data } = cycleData();
    L.$("#cycnote").textContent = data[0].length ? `${data[0].length} cycles` : "no complete cycle yet";
    el.dataset.cycles = data[0].length;
    if (R.cycplot) { R.cycplot.setData(data); return; }
    const pts = { show: data[0].length <= 150, size: 4 }; // markers only where they can be seen
    R.cycplot = new uPlot({
      width: width(el), height: 260,
      scales: { x: { time: false }, cap: {}, ce: { range: (u, min, max) => [Math.min(min ?? 90, 95), Math.max(max ?? 100, 100.5)] } },
      series: [{ label: "cycle" },
        { label: `discharge (${unit})`, scale: "cap", stroke: C.dis, width: 1, points: pts, value: (u, v) => L.num(v, 2) },
        { label: `charge (${unit})`, scale: "cap", stroke: C.ch, width: 1, points: pts, value: (u, v) => L.num(v, 2) },
        { label: "CE (%)", scale: "ce", stroke: C.ce, width: 1, points: pts, value: (u, v) => L.num(v, 2) }],
      axes: [Object.assign({}, AX, { label: "cycle", labelSize: 18, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }),
        Object.assign({}, AX, { scale: "cap", label: unit, labelSize: 18, size: 52 }),
        Object.assign({}, AX, { scale: "ce", label: "CE %", labelSize: 18, side: 1, grid: { show: false }, size: 52 })],
    }, data, el);
  }

  // ---------------------------------------------------------------- impedance
  async function showSpectrum(name) {
    const d = await L.api(`${base}/eis/${encodeURIComponent(name)}`);
    const el = L.$("#eisplot");
    if (!d.z_real_ohm) { L.$("#eisnote").textContent = d.error || "unreadable spectrum"; return; }
    const pts = d.z_real_ohm.map((x, k) => [x, -d.z_imag_ohm[k], "d"]);
    if (d.fit.ok) d.fit.z_real_ohm.forEach((x, k) => pts.push([x, -d.fit.z_imag_ohm[k], "f"]));
    pts.sort((a, b) => a[0] - b[0]);
    const data = [pts.map((p) => p[0]), pts.map((p) => (p[2] === "d" ? p[1] : null)), pts.map((p) => (p[2] === "f" ? p[1] : null))];
    const ys = pts.map((p) => p[1]), xs = data[0];
    const span = Math.max(xs[xs.length - 1] - xs[0], Math.max(...ys) - Math.min(0, ...ys)) * 1.08 || 1;
    const x0 = Math.min(0, xs[0]), y0 = Math.min(0, Math.min(...ys));
    if (R.eisplot) R.eisplot.destroy();
    R.eisplot = new uPlot({
      width: width(el), height: Math.min(width(el), 340),
      scales: { x: { time: false, range: () => [x0, x0 + span] }, y: { range: () => [y0, y0 + span * 0.8] } },
      series: [{ label: "Z' (Ω)", value: (u, v) => L.num(v, 4) },
        { label: "measured −Z'' (Ω)", stroke: C.v, paths: () => null, points: { show: true, size: 6, fill: C.v }, value: (u, v) => L.num(v, 4) },
        { label: `fit ${d.fit.circuit}`, stroke: C.fit, width: 1.5, spanGaps: true, points: { show: false }, value: (u, v) => L.num(v, 4) }],
      axes: [Object.assign({}, AX, { label: "Z' (Ω)", labelSize: 18 }), Object.assign({}, AX, { label: "−Z'' (Ω)", labelSize: 18, size: 52 })],
      cursor: { drag: { x: false, y: false } },
    }, data, el);
    L.$("#eisnote").textContent = d.fit.ok ? `fit residual ${L.num(d.fit.rel_rms_pct, 2)} % RMS` : `fit failed: ${d.fit.message}`;
    const rows = (d.fit.parameters || []).map((p) => L.el("tr", {}, L.el("td", { text: p.parameter }),
      L.el("td", { class: "num", text: L.sig(p.value, 4) }), L.el("td", { class: "num", text: "± " + L.sig(p.stderr, 2) }),
      L.el("td", { text: p.unit }), L.el("td", { class: "wrap dim", text: p.meaning })));
    L.$("#eisfit").replaceChildren(L.el("tr", {}, ...["parameter", "value", "σ", "unit", "meaning"].map((h) => L.el("th", { text: h }))), ...rows);
  }
  async function loadSpectra() {
    const d = await L.api(base + "/eis");
    const sel = L.$("#eislist");
    const list = d.spectra || [];
    sel.replaceChildren(...list.map((s) => L.el("option", { value: s.name, text: s.cycle !== null ? `cycle ${s.cycle} (${s.name})` : s.name })));
    sel.onchange = () => showSpectrum(sel.value);
    if (list.length) showSpectrum(list[list.length - 1].name).then(() => { sel.value = list[list.length - 1].name; });
    else L.$("#eisnote").textContent = "no impedance spectra in this run";
  }

  // ---------------------------------------------------------------- events
  function eventText(e) {
    const d = e.data || {};
    return Object.entries(d).filter(([, v]) => v !== null && v !== "" && typeof v !== "object")
      .map(([k, v]) => `${k}=${typeof v === "number" ? Number(v.toPrecision(5)) : v}`).join("  ");
  }
  function addEvents(list) {
    for (const e of list) if (!R.seqs.has(e.seq)) { R.seqs.add(e.seq); R.events.push(e); }
    R.events.sort((a, b) => b.seq - a.seq);
    const kinds = new Set(R.events.map((e) => e.kind));
    const sel = L.$("#evkind");
    for (const k of kinds) if (!sel.querySelector(`option[value="${k}"]`)) sel.append(L.el("option", { value: k, text: k }));
    const want = sel.value;
    const all = R.events.filter((e) => !want || e.kind === want);
    const rows = all.slice(0, R.eventRows || 100);
    const more = L.$("#evmore");
    more.classList.toggle("hidden", all.length <= rows.length);
    more.textContent = `show ${Math.min(all.length - rows.length, 500)} more`;
    L.$("#events tbody").replaceChildren(...rows.map((e) => L.el("tr", { class: "ev-" + e.kind },
      L.timeCell(e.wall_time), L.el("td", { class: "num", text: e.seq }),
      L.el("td", { text: e.kind }), L.el("td", { class: "wrap", text: eventText(e) }))));
  }

  // ---------------------------------------------------------------- downloads
  function downloads(info) {
    const box = L.$("#downloads");
    if (!info.on_disk) {
      box.textContent = info.lab ? `This run's files are on the PC of agent ${info.station} (its runs directory); ` +
        "run labrig web there, or on a drive that holds them, for plots of the stored records, spectra, the report and downloads."
        : "This run's files are not on this computer.";
      return;
    }
    const d = (kind, label) => L.el("a", { href: `${base}/download/${kind}`, download: "", text: label });
    box.replaceChildren(L.el("a", { href: `/runs/${encodeURIComponent(runId)}/report`, target: "_blank", rel: "noopener", text: "Report (HTML)" }),
      d("parquet", "Parquet"), d("csv", "CSV"), d("cycles-csv", "cycles CSV"), d("bdf-csv", "BDF CSV (zip)"), d("bdf-parquet", "BDF Parquet"));
  }

  function reloadResults() {
    if (!R.zoomed) overview();
    L.api(base + "/cycles?fields=plot").then((d) => { R.cycles = cycleRows(d); drawCycles(); });
    loadSpectra();
  }

  // ---------------------------------------------------------------- start
  document.addEventListener("labrig-theme", () => location.reload()); // plots in the new colours
  document.addEventListener("DOMContentLoaded", async () => {
    colours();
    L.$("#tz").textContent = "· " + L.tzName;
    L.$("#resetzoom").addEventListener("click", () => overview());
    L.$("#evkind").addEventListener("change", () => addEvents([]));
    L.$("#evmore").addEventListener("click", async () => {
      R.eventRows = (R.eventRows || 100) + 500;
      const d = await L.api(`${base}/events?limit=${R.eventRows}`);
      addEvents(d.events || []);
    });
    // everything the page draws first was asked for at once, by run-boot.js at the top
    // of the page (else now)
    const boot = L.boot && L.boot.run === runId ? L.boot : null;
    const asked = boot ? [L.read(boot.info), L.read(boot.series), L.read(boot.cycles), L.read(boot.events)]
      : [L.api(base), L.api(seriesUrl()), L.api(base + "/cycles?fields=plot"), L.api(base + "/events?limit=100")];
    const info = await asked[0];
    if (info._status === 404) { L.$("#facts").textContent = info.error; R.loaded = 2; ready(); return; }
    facts(info);
    downloads(info);
    overview(asked[1]).then(ready);
    asked[2].then((d) => { R.cycles = cycleRows(d); drawCycles(); ready(); });
    asked[3].then((d) => { addEvents(d.events || []); ready(); });
    const spectra = () => (document.body.dataset.ready ? loadSpectra() : setTimeout(spectra, 100));
    spectra(); // impedance fits take a while: after the rest is drawn
    L.api("/api/me").then((m) => L.showConnections(m.connections));
    L.stream(base + "/stream", {
      update: (d) => {
        if (d.overflow) { overview(); }
        addPoints(d.points || []);
        if (d.events && d.events.length) {
          addEvents(d.events);
          const ended = d.events.filter((e) => e.kind === "cycle_ended");
          if (ended.length) { R.cycles.push(...ended.map((e) => e.data)); drawCycles(); }
        }
        if (d.info) {
          const was = R.info && R.info.live ? R.info.live.run_state : null;
          facts(d.info);
          const now = d.info.live ? d.info.live.run_state : d.info.state;
          if (now !== was && ENDED.includes(now)) setTimeout(reloadResults, 1500); // files written
        }
      },
    });
    window.addEventListener("resize", () => {
      for (const [p, el] of [[R.plot, "#plot"], [R.cycplot, "#cycplot"]]) if (p) p.setSize({ width: width(L.$(el)), height: p.height });
    });
  });
})();
