/* The lab page: every channel of every station, live, in a virtualised grid. */
"use strict";
(function () {
  const L = window.labrig;
  const STATES = ["running", "starting", "paused", "waiting", "tripped", "offline", "idle"];
  const lab = (L.lab = {
    rows: new Map(), order: [], sortKey: "key", sortDir: 1, filter: "", states: new Set(),
    staleAfter: 30, offset: 0, batches: 0, received: 0, pending: false, resort: true,
  });
  const COLS = [
    ["station", (r) => r.station, "opt"],
    ["channel", (r) => (narrow.matches ? r.station + "\n" + r.channel : r.channel), "chan"],
    ["state", stateText, "st"],
    ["cell_id", (r) => r.cell_id || "", ""],
    ["protocol", (r) => r.protocol || "", "opt"],
    ["cycle", (r) => (r.cycle === null || r.cycle === undefined ? "" : String(r.cycle)), "num"],
    ["step", (r) => r.step || "", "opt"],
    ["voltage_V", (r) => L.num(r.voltage_V, 4), "num"],
    ["current_A", (r) => L.num(r.current_A === null ? null : r.current_A * 1000, 3), "num"],
    ["temperature_C", (r) => L.num(r.temperature_C, 1), "num opt"],
    ["last_event", (r) => r.last_event || "", "opt"],
    ["eta_s", (r) => (r.state === "running" || r.state === "paused" ? L.duration(r.eta_s) : ""), "num opt"],
    ["updated", (r) => (r.updated ? L.duration(now() - r.updated) : "–"), "num opt"],
  ];
  const now = () => Date.now() / 1000 - lab.offset;
  const narrow = matchMedia("(max-width: 760px)"); // a phone: fewer columns, shorter words
  function stateText(r) {
    if (r.state === "idle" && r.run_state) return narrow.matches ? r.run_state : "idle · " + r.run_state;
    if (narrow.matches) return r.state;
    if (r.state === "waiting" && r.waiting_for) return "waiting · " + r.waiting_for;
    if (r.state === "offline" && r.note && r.note.startsWith("agent")) return "agent offline";
    return r.state;
  }
  let body, spacer, pool = [], rowH = 34;

  function searchText(r) {
    return [r.station, r.channel, r.cell_id, r.protocol, r.run_id, r.step, r.state, r.run_state]
      .filter(Boolean).join(" ").toLowerCase();
  }
  function take(rows) {
    for (const r of rows) {
      const old = lab.rows.get(r.key);
      if (!old || old.state !== r.state || lab.sortKey !== "key" || lab.filter) lab.resort = true;
      if (old) {
        Object.assign(old, r); // the same object: the visible order keeps pointing at it
        old._ver++;
        old._search = searchText(old);
      } else {
        r._ver = 1;
        r._search = searchText(r);
        lab.rows.set(r.key, r);
      }
    }
    lab.received += rows.length;
    schedule();
  }
  function cmp(a, b) {
    const k = lab.sortKey;
    let x = a[k], y = b[k];
    if (k === "state") { x = STATES.indexOf(x); y = STATES.indexOf(y); }
    if (x === y) return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * lab.sortDir;
  }
  function reorder() {
    let arr = Array.from(lab.rows.values());
    if (lab.filter) arr = arr.filter((r) => r._search.includes(lab.filter));
    if (lab.states.size) arr = arr.filter((r) => lab.states.has(r.state));
    arr.sort(cmp);
    lab.order = arr;
    spacer.style.height = arr.length * rowH + "px";
    L.$("#count").textContent = `${arr.length} of ${lab.rows.size} channels`;
    L.$("#empty").textContent = !lab.rows.size ? emptyText() : arr.length ? ""
      : "No channel matches the filter" + (lab.states.size ? ` and the states chosen (${[...lab.states].join(", ")})` : "") + ".";
    counts();
    lab.resort = false;
  }
  function emptyText() {
    const c = L.conn || {};
    if (c.lab) return "No positions in the lab database yet: agents register theirs when they start (docs/lab.md).";
    if (c.mqtt) return "No channels yet: waiting for a station to publish on MQTT (see docs/mqtt.md).";
    return `No channels yet: no scheduler daemon answers and no run in ${c.runs_dir || "the runs directory"} names its position.`;
  }
  function counts() {
    const n = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const r of lab.rows.values()) n[r.state] = (n[r.state] || 0) + 1;
    for (const b of document.querySelectorAll("#states button")) {
      b.textContent = `${b.dataset.state} ${n[b.dataset.state] || 0}`;
    }
  }
  function fill(el, r) {
    const cells = el.children;
    for (let i = 0; i < COLS.length; i++) {
      const text = COLS[i][1](r);
      if (cells[i].textContent !== text) cells[i].textContent = text;
    }
    const st = cells[2];
    const stale = r.state === "running" && r.updated && now() - r.updated > lab.staleAfter;
    const cls = "st " + r.state + (stale ? " stale" : "");
    if (st.className !== cls) st.className = cls;
    st.title = stale ? "no news for " + L.duration(now() - r.updated) : (r.note || r.run_state || "");
    cells[10].className = "opt ev-" + (r.last_event_kind || "");
    cells[10].title = r.last_event_time ? L.time(r.last_event_time) : "";
    cells[11].title = r.eta_s ? "ends about " + L.time(now() + r.eta_s) : "";
    el.dataset.key = r.key;
    el.dataset.state = r.state;
    el.dataset.updated = r.updated || "";
    el.dataset.run = r.run_id || "";
  }
  function render() {
    lab.pending = false;
    if (lab.resort) reorder();
    const first = Math.max(0, Math.floor(body.scrollTop / rowH) - 4);
    for (let i = 0; i < pool.length; i++) {
      const el = pool[i], idx = first + i, r = lab.order[idx];
      if (!r) { if (!el.hidden) el.hidden = true; el._row = null; continue; }
      if (el.hidden) el.hidden = false;
      if (el._idx !== idx) { el.style.transform = `translateY(${idx * rowH}px)`; el._idx = idx; }
      if (el._row !== r || el._ver !== r._ver || el._tick !== lab.tick) {
        fill(el, r); el._row = r; el._ver = r._ver; el._tick = lab.tick;
      }
    }
  }
  function schedule() {
    if (!lab.pending) { lab.pending = true; requestAnimationFrame(render); }
  }
  function makePool() {
    const want = Math.ceil(body.clientHeight / rowH) + 10;
    while (pool.length < want) {
      const el = L.el("div", { class: "grow", role: "row", hidden: true });
      for (const [, , cls] of COLS) el.append(L.el("span", { class: cls }));
      el.addEventListener("click", () => { if (el.dataset.run) location.href = "/runs/" + encodeURIComponent(el.dataset.run); });
      body.append(el);
      pool.push(el);
    }
  }
  function header() {
    for (const h of document.querySelectorAll("#ghead span")) {
      h.addEventListener("click", () => {
        const k = h.dataset.sort;
        lab.sortDir = lab.sortKey === k ? -lab.sortDir : 1;
        lab.sortKey = k;
        for (const o of document.querySelectorAll("#ghead span")) o.classList.remove("sorted", "desc");
        h.classList.add("sorted");
        if (lab.sortDir < 0) h.classList.add("desc");
        lab.resort = true; schedule();
      });
    }
    const chips = L.$("#states");
    for (const s of STATES) {
      const b = L.el("button", { type: "button", "data-state": s, text: s });
      b.addEventListener("click", () => {
        if (lab.states.has(s)) lab.states.delete(s); else lab.states.add(s);
        b.classList.toggle("on");
        lab.resort = true; schedule();
      });
      chips.append(b);
    }
    L.$("#filter").addEventListener("input", (e) => {
      lab.filter = e.target.value.trim().toLowerCase();
      lab.resort = true; schedule();
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    body = L.$("#gbody");
    spacer = L.$("#spacer");
    rowH = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--rowh")) || 34;
    header();
    makePool();
    body.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", () => { makePool(); schedule(); });
    narrow.addEventListener("change", () => { lab.tick = (lab.tick || 0) + 1; schedule(); });
    setInterval(() => { lab.tick = (lab.tick || 0) + 1; schedule(); }, 5000); // ages, staleness
    L.stream("/api/lab/stream", {
      snapshot: (d) => {
        lab.offset = Date.now() / 1000 - d.now;
        lab.staleAfter = d.stale_after_s || 30;
        L.showConnections(d.connections);
        lab.rows.clear();
        lab.resort = true;
        take(d.rows);
      },
      rows: (d) => { lab.offset = Date.now() / 1000 - d.now; lab.batches++; take(d.rows); },
      status: (d) => { lab.offset = Date.now() / 1000 - d.now; L.showConnections(d.connections); },
    });
  });
})();
