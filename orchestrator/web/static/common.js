/* labrig web: helpers shared by every page (no build step, no framework). */
"use strict";
(function () {
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const L = (window.labrig = window.labrig || {});
  L.csrf = meta("labrig-csrf");
  L.user = meta("labrig-user");
  L.role = meta("labrig-role");
  L.roleNote = meta("labrig-role-note"); // why the role is lower than the users file says
  L.auth = meta("labrig-auth") === "1";
  L.canCommand = L.auth && L.role === "operator";

  L.$ = (sel, root) => (root || document).querySelector(sel);
  L.el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  };

  // ---- numbers and times (shown in the viewer's own time zone) ----
  L.num = (v, digits) => (v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(digits));
  // one formatter each (making one per call costs more than the formatting)
  const fmtTime = new Intl.DateTimeFormat([], { year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const fmtClock = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  L.time = (epoch) => (epoch ? fmtTime.format(new Date(epoch * 1000)) : "–");
  // short, for tables: the clock today, the day and minute this year, else the date
  const fmtDay = new Intl.DateTimeFormat([], { month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  const fmtDate = new Intl.DateTimeFormat([], { year: "numeric", month: "short", day: "2-digit" });
  L.when = (epoch) => {
    if (!epoch) return "–";
    const d = new Date(epoch * 1000), today = new Date();
    if (d.toDateString() === today.toDateString()) return fmtClock.format(d);
    return d.getFullYear() === today.getFullYear() ? fmtDay.format(d) : fmtDate.format(d);
  };
  // a table cell with the short time and the full one on hover
  L.timeCell = (epoch, attrs) => L.el("td", Object.assign({ text: L.when(epoch), title: epoch ? L.time(epoch) : "" }, attrs || {}));
  L.clock = (epoch) => (epoch ? fmtClock.format(new Date(epoch * 1000)) : "–");
  L.duration = (s) => {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, s);
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
    return `${(s / 86400).toFixed(1)} d`;
  };
  L.ago = (epoch, now) => (epoch ? L.duration((now || Date.now() / 1000) - epoch) + " ago" : "–");
  L.tzName = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  // ---- requests ----
  L.api = async (path, options) => {
    const opts = Object.assign({ headers: {} }, options || {});
    if (opts.body && typeof opts.body !== "string") {
      opts.body = JSON.stringify(opts.body);
      opts.headers["content-type"] = "application/json";
    }
    if (opts.method && opts.method !== "GET") opts.headers["x-csrf-token"] = L.csrf;
    return L.read(fetch(path, opts));
  };
  // the JSON of a response (a fetch already sent, such as run-boot.js's)
  L.read = async (pending) => {
    const res = await pending;
    if (res.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("signed out");
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = { error: `HTTP ${res.status}` }; }
    data._status = res.status;
    return data;
  };

  // A server-sent event stream that tells the page when it is (dis)connected.
  L.stream = (path, handlers, onState) => {
    let es = null;
    const open = () => {
      es = new EventSource(path);
      es.onopen = () => onState && onState(true);
      es.onerror = async () => {
        onState && onState(false);
        if (es.readyState === EventSource.CLOSED) {
          await L.api("/api/me").catch(() => null); // redirects when signed out
          setTimeout(open, 2000);
        }
      };
      for (const [name, fn] of Object.entries(handlers)) {
        es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
      }
    };
    open();
    return { close: () => es && es.close() };
  };

  // ---- connection indicators in the header ----
  L.showConnections = (c) => {
    const box = L.$("#conn");
    if (!box || !c) return;
    L.conn = c;
    box.replaceChildren();
    if (c.lab) box.append(L.el("span", { class: c.lab.connected ? "ok" : "bad",
      title: c.lab.error || `${c.lab.url} as ${c.lab.login} (${c.lab.role || "no lab role"})`,
      text: c.lab.connected ? `lab · ${c.lab.online}/${c.lab.agents} agents online` : "lab database" }));
    if (c.mqtt) box.append(L.el("span", { class: c.mqtt.connected ? "ok" : "bad",
      title: c.mqtt.error || c.mqtt.url, text: "MQTT" }));
    else box.append(L.el("span", { class: "dim", text: "no MQTT",
      title: c.lab ? "no live readings: start with --mqtt to see them"
        : "channels from the scheduler and the run directories (no --mqtt given)" }));
    if (c.daemon) box.append(L.el("span", { class: c.daemon.available ? "ok" : "bad",
      title: c.daemon.error || `daemon of ${c.runs_dir}`, text: "scheduler" }));
    box.append(L.el("span", { class: "dim", text: L.tzName, title: "times are shown in this time zone" }));
  };

  // ---- a confirmation dialog; resolves to {note} or null ----
  L.confirm = (title, text, okLabel, danger) => new Promise((resolve) => {
    const note = L.el("input", { type: "text", maxlength: "200", placeholder: "note (optional)" });
    const ok = L.el("button", { class: danger ? "danger" : "", text: okLabel, id: "confirm-ok" });
    const cancel = L.el("button", { text: "Cancel", id: "confirm-cancel" });
    const dlg = L.el("dialog", { id: "confirm" }, L.el("h1", { text: title }),
      L.el("p", { text }), note, L.el("div", { class: "row" }, cancel, ok));
    document.body.append(dlg);
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    ok.addEventListener("click", () => done({ note: note.value.trim() || null }));
    cancel.addEventListener("click", () => done(null));
    dlg.addEventListener("cancel", () => done(null));
    dlg.showModal();
  });

  // numbers of any size to ``digits`` significant digits (fit parameters: 1e-5 and 3e4)
  L.sig = (v, digits) => {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? Number(v).toExponential(digits - 1) : String(Number(Number(v).toPrecision(digits)));
  };
  L.css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  // ---- the colour theme: auto (the system's), dark, light ----
  const THEMES = ["auto", "dark", "light"];
  L.theme = () => document.documentElement.dataset.theme || "auto";
  function themeButton() {
    const b = L.$("#theme");
    if (!b) return;
    b.title = `colours: ${L.theme()} (click: ${THEMES[(THEMES.indexOf(L.theme()) + 1) % 3]})`;
    b.onclick = () => {
      const next = THEMES[(THEMES.indexOf(L.theme()) + 1) % 3];
      try { if (next === "auto") localStorage.removeItem("labrig-theme"); else localStorage.setItem("labrig-theme", next); } catch (e) { /* kept for this page only */ }
      if (next === "auto") delete document.documentElement.dataset.theme; else document.documentElement.dataset.theme = next;
      themeButton();
      document.dispatchEvent(new Event("labrig-theme"));
    };
  }

  L.message = (box, ok, text) => {
    box.replaceChildren(L.el("div", { class: "msg " + (ok ? "ok" : "bad"), text }));
  };

  document.addEventListener("DOMContentLoaded", () => {
    const who = L.$("form.who");
    if (who && !L.auth) who.classList.add("hidden");
    themeButton();
  });
})();
