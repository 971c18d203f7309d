/* The queue page: the scheduler daemon's runs, the shared instruments' bookings, submit. */
"use strict";
(function () {
  const L = window.labrig;
  const ACTIVE = ["queued", "waiting", "running", "paused", "detached"];

  function jobs(list, waitingFor) {
    const rows = list.slice().sort((a, b) => (ACTIVE.includes(b.state) - ACTIVE.includes(a.state)) || (b.submitted - a.submitted));
    L.$("#jobs tbody").replaceChildren(...rows.map((j) => {
      const starts = j.not_before ? L.time(j.not_before) : j.after ? `after ${j.after}` : "";
      const cancel = L.canCommand && (j.state === "queued" || j.state === "waiting")
        ? L.el("button", { class: "danger", text: "Remove", onclick: () => remove(j) }) : "";
      return L.el("tr", { "data-run": j.run_id },
        L.el("td", {}, L.el("a", { href: "/runs/" + encodeURIComponent(j.run_id), text: j.run_id })),
        L.el("td", { text: j.position }), L.el("td", { text: j.protocol }),
        L.el("td", { title: j.reason || "" }, waitingFor[j.run_id] && j.state === "running"
          ? L.el("span", { class: "st waiting", text: "waiting", title: "for " + waitingFor[j.run_id] })
          : L.el("span", { class: "st " + j.state, text: j.state })),
        L.el("td", { text: L.time(j.submitted) }), L.el("td", { text: starts }),
        L.el("td", { text: j.started ? L.time(j.started) : "" }),
        L.el("td", { class: "num", text: j.cycle ?? "" }),
        L.el("td", { text: j.eta_s ? `${L.duration(j.eta_s)} (${L.clock(Date.now() / 1000 + j.eta_s)})` : "" }),
        L.el("td", {}, cancel));
    }));
  }
  async function remove(j) {
    const ok = await L.confirm("Remove run", `Take ${j.run_id} off the queue of ${j.position}?`, "Remove", true);
    if (!ok) return;
    const d = await L.api(`/api/runs/${encodeURIComponent(j.run_id)}/command`, { method: "POST", body: { command: "abort", note: ok.note, confirm: true } });
    L.message(L.$("#submitmsg"), d.accepted, d.reason || d.error);
    load();
  }
  function timeline(list, names) {
    const box = L.$("#timeline");
    if (!list.length) { box.replaceChildren(L.el("p", { class: "dim", text: "No shared instrument is booked or awaited." })); return; }
    const now = Date.now() / 1000;
    let end = now + 60;
    for (const t of list) for (const s of t.slots) end = Math.max(end, s.expected_end || 0, (s.expected_start || 0) + (s.expected_s || 0));
    const from = Math.min(now, ...list.flatMap((t) => t.slots.map((s) => s.since || now)));
    const pct = (x) => `${(100 * (x - from)) / (end - from)}%`;
    box.replaceChildren(L.el("p", { class: "dim" }, `from ${L.clock(from)} to about ${L.time(end)} · `,
      L.el("span", { class: "st running", text: "holding" }), " ", L.el("span", { class: "st waiting", text: "waiting" })),
      ...list.map((t) => L.el("div", { class: "tl-row" }, L.el("span", { text: t.resource }),
        L.el("div", { class: "tl-track" }, ...t.slots.map((s) => {
          const a = s.holding ? s.since || now : s.expected_start || now;
          const b = s.expected_end || a + (s.expected_s || 60);
          const bar = L.el("div", { class: "tl-bar " + (s.holding ? "hold" : "wait"),
            title: `${s.run_id}: ${s.holding ? "holding since " + L.clock(s.since) : "waiting, expected at " + L.clock(s.expected_start)}` +
              (s.expected_s ? `, about ${L.duration(s.expected_s)}` : ""), text: names[s.run_id] || s.run_id });
          bar.style.left = pct(a);
          bar.style.width = `max(4px, calc(${pct(b)} - ${pct(a)}))`;
          return bar;
        })))));
  }
  async function load() {
    const d = await L.api("/api/queue");
    L.$("#daemon").textContent = d.available
      ? `Scheduler of station ${d.station || "?"} · updated ${L.clock(d.fetched_at)} · times in ${L.tzName}` +
        (d.watchdog_trips ? ` · stale-data watchdog trips: ${d.watchdog_trips}` : "")
      : `No scheduler daemon: ${d.error || "unavailable"}`;
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
