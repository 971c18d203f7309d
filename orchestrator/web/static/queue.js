/* The queue page: the scheduler daemon's runs, the shared instruments' bookings, submit. */
"use strict";
(function () {
  const L = window.labrig;
  const ACTIVE = ["queued", "waiting", "running", "paused", "detached", "claimed"];

  function jobs(list, waitingFor) {
    const rows = list.slice().sort((a, b) => (ACTIVE.includes(b.state) - ACTIVE.includes(a.state)) || (b.submitted - a.submitted));
    L.$("#jobs tbody").replaceChildren(...rows.map((j) => {
      const starts = j.not_before ? L.when(j.not_before) : j.after ? `after ${j.after}` : "";
      const notYet = j.state === "queued" || j.state === "waiting" || (j.state === "claimed" && !j.started);
      const cancel = L.canCommand && notYet
        ? L.el("button", { class: "danger small", text: "Remove", onclick: () => remove(j) }) : "";
      return L.el("tr", { "data-run": j.run_id },
        L.el("td", { class: "clip" }, L.el("a", { href: "/runs/" + encodeURIComponent(j.run_id), text: j.run_id, title: j.run_id })),
        L.el("td", { title: j.reason || "" }, waitingFor[j.run_id] && j.state === "running"
          ? L.el("span", { class: "st waiting", text: "waiting", title: "for " + waitingFor[j.run_id] })
          : L.el("span", { class: "st " + j.state, text: j.state + (j.place ? ` #${j.place}` : ""),
            title: j.place ? `number ${j.place} in the queue of ${j.position}` : "" }),
          ACTIVE.includes(j.state) && j.agent_online === false ? L.el("span", { class: "dim", text: " agent offline" }) : "",
          cancel ? " " : "", cancel),
        L.el("td", { text: j.position }), L.el("td", { class: "clip", text: j.protocol, title: j.protocol }),
        L.timeCell(j.submitted, j.submitted_by ? { title: `${L.time(j.submitted)} by ${j.submitted_by}` } : {}),
        L.el("td", { text: starts }),
        j.started ? L.timeCell(j.started) : L.el("td", {}),
        L.el("td", { class: "num", text: j.cycle ?? "" }),
        L.el("td", { text: j.eta_s ? `${L.duration(j.eta_s)} (${L.clock(Date.now() / 1000 + j.eta_s)})` : "" }));
    }));
  }
  async function remove(j) {
    const ok = await L.confirm("Remove run", `Take ${j.run_id} off the queue of ${j.position}?`, "Remove", true);
    if (!ok) return;
    const d = await L.api(`/api/runs/${encodeURIComponent(j.run_id)}/command`, { method: "POST", body: { command: "abort", note: ok.note, confirm: true } });
    L.message(L.$("#submitmsg"), d.accepted, d.reason || d.error);
    load();
  }
  // Bars per shared instrument: the holder from when it got the instrument, then who
  // waits. Without an expected length (the lab database knows none) a bar is drawn with
  // a nominal width and a dashed edge.
  function slotsOf(t, now, nominal) {
    let next = now;
    return t.slots.map((s) => {
      const known = s.expected_end || s.expected_s;
      const a = s.holding ? s.since || now : s.expected_start || next;
      const b = s.expected_end || (s.holding && !known ? Math.max(now, a + nominal / 4) : a + (s.expected_s || nominal));
      next = Math.max(next, b);
      return { s, a, b, known };
    });
  }
  function slotTitle(s, names) {
    const who = names[s.run_id] ? `${s.run_id} (${names[s.run_id]})` : s.run_id;
    const parts = [who + ": " + (s.holding ? `holding since ${L.time(s.since)}` : s.expected_start
      ? `waiting, expected at ${L.time(s.expected_start)}` : `waiting since ${L.time(s.since)}` + (s.place ? `, #${s.place} in line` : ""))];
    if (s.holder) parts.push(`for ${s.holder}`);
    if (s.token !== null && s.token !== undefined) parts.push(`token ${s.token}`);
    if (s.expected_s) parts.push(`about ${L.duration(s.expected_s)}`);
    return parts.join(", ");
  }
  function timeline(list, names) {
    const box = L.$("#timeline");
    if (!list.length) { box.replaceChildren(L.el("p", { class: "dim", text: "No shared instrument is booked or awaited." })); return; }
    const now = Date.now() / 1000;
    const first = Math.min(now, ...list.flatMap((t) => t.slots.map((s) => s.since || now)));
    const from = first - Math.max(10, (now - first) * 0.05);
    const nominal = Math.max(120, (now - from) * 0.3);
    const rows = list.map((t) => ({ t, bars: slotsOf(t, now, nominal) }));
    let end = now + 60;
    for (const r of rows) for (const x of r.bars) end = Math.max(end, x.b);
    const pct = (x) => `${(100 * (x - from)) / (end - from)}%`;
    const nowMark = L.el("div", { class: "tl-now", title: "now " + L.clock(now) });
    nowMark.style.left = pct(now);
    const open = rows.some((r) => r.bars.some((x) => !x.known));
    box.replaceChildren(L.el("p", { class: "dim" }, `from ${L.when(from)} to about ${L.when(end)} · `,
      L.el("span", { class: "st running", text: "holding" }), " ", L.el("span", { class: "st waiting", text: "waiting" }),
      open ? " · a dashed end: length not known" : ""),
      ...rows.map(({ t, bars }) => L.el("div", { class: "tl-row" }, L.el("span", { class: "tl-name", text: t.resource, title: t.resource }),
        L.el("div", { class: "tl-track" }, nowMark.cloneNode(), ...bars.map(({ s, a, b, known }) => {
          const bar = L.el("div", { class: "tl-bar " + (s.holding ? "hold" : "wait") + (known ? "" : " open"),
            title: slotTitle(s, names), text: names[s.run_id] || s.run_id });
          bar.style.left = pct(a);
          bar.style.width = `max(4px, calc(${pct(b)} - ${pct(a)}))`;
          return bar;
        })))));
  }
  async function load() {
    const d = await L.api("/api/queue");
    const lab = d.source === "lab";
    const online = (d.agents || []).filter((a) => a.online).length;
    L.$("#qtitle").textContent = lab ? "Runs of the lab" : "Runs of the scheduler";
    L.$("#daemon").textContent = !d.available
      ? (lab ? `Lab database unavailable: ${d.error}` : `No scheduler daemon: ${d.error || "unavailable"}`)
      : (lab ? `Lab queue · ${online} of ${(d.agents || []).length} agents online`
        : `Scheduler of station ${d.station || "?"}`) + ` · updated ${L.clock(d.fetched_at)} · times in ${L.tzName}` +
        (d.watchdog_trips ? ` · stale-data watchdog trips: ${d.watchdog_trips}` : "");
    const waitingFor = {};
    for (const t of d.timeline || []) for (const s of t.slots) if (!s.holding) waitingFor[s.run_id] = t.resource;
    jobs(d.runs || [], waitingFor);
    const names = Object.fromEntries((d.runs || []).map((j) => [j.run_id, `${j.position} · ${j.protocol}`]));
    timeline(d.timeline || [], names);
  }
  async function setupSubmit() {
    if (!L.canCommand) return;
    L.$("#submitbox").classList.remove("hidden");
    const d = await L.api("/api/protocols");
    L.$("#s-protocol").replaceChildren(L.el("option", { value: "", text: "(choose)" }),
      ...(d.protocols || []).map((p) => L.el("option", { value: p.name, text: `${p.name} – ${p.title}` })));
    L.$("#submit").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const at = L.$("#s-at").value ? new Date(L.$("#s-at").value).getTime() / 1000 : null; // viewer's time zone
      const sets = {};
      for (const line of L.$("#s-sets").value.split("\n")) {
        const [k, ...v] = line.split("=");
        if (k.trim() && v.length) sets[k.trim()] = v.join("=").trim();
      }
      const body = { protocol: L.$("#s-protocol").value, protocol_yaml: L.$("#s-yaml").value, cell_id: L.$("#s-cell").value,
        position: L.$("#s-position").value, at, after: L.$("#s-after").value, sets };
      const what = body.protocol || "the pasted protocol";
      const ok = await L.confirm("Submit run", `Queue ${what} for cell ${body.cell_id}` + (at ? ` to start at ${L.time(at)}` : "") + "?", "Submit", false);
      if (!ok) return;
      const r = await L.api("/api/submit", { method: "POST", body });
      L.message(L.$("#submitmsg"), r.ok, r.ok ? `queued ${r.run_id} on ${r.position} (${r.state})` : r.error);
      load();
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    load();
    setInterval(load, 3000);
    setupSubmit();
    L.api("/api/me").then((m) => L.showConnections(m.connections));
  });
})();
