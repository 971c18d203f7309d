/* The runs page: every run directory, newest first, with live states. */
"use strict";
(function () {
  const L = window.labrig;
  let runs = [];
  function show() {
    const f = L.$("#filter").value.trim().toLowerCase();
    const tbody = L.$("#runs tbody");
    const rows = runs.filter((r) => !f || [r.run_id, r.protocol, r.cell_id, r.state, r.position]
      .filter(Boolean).join(" ").toLowerCase().includes(f));
    tbody.replaceChildren(...rows.map((r) => L.el("tr", { "data-run": r.run_id },
      L.el("td", { class: "clip" }, L.el("a", { href: "/runs/" + encodeURIComponent(r.run_id), text: r.run_id, title: r.run_id })),
      L.el("td", {}, L.el("span", { class: "st " + (r.state || ""), text: r.state || "?" })),
      L.el("td", { class: "clip", text: r.protocol || "", title: r.protocol || "" }),
      L.el("td", { text: r.cell_id || "" }),
      L.el("td", { text: [r.station, r.position].filter(Boolean).join(" / ") }),
      L.timeCell(r.created),
      r.ended ? L.timeCell(r.ended, { title: `${L.time(r.ended)}${r.reason ? " – " + r.reason : ""}` }) : L.el("td", {}),
      L.el("td", { class: "num", text: r.cycles === null || r.cycles === undefined ? (r.cycle ?? "") : String(r.cycles) }))));
    L.$("#count").textContent = `${rows.length} of ${runs.length} runs · times in ${L.tzName}`;
  }
  async function load() {
    const d = await L.api("/api/runs?limit=2000");
    runs = d.runs || [];
    show();
  }
  document.addEventListener("DOMContentLoaded", () => {
    L.$("#filter").addEventListener("input", show);
    load();
    setInterval(load, 10000);
    L.api("/api/me").then((m) => L.showConnections(m.connections));
  });
})();
