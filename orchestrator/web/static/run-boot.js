/* The run page's first requests, sent while the browser is still reading the page (this
   small script runs at the top of <head>, before the chart library and the page's own
   scripts are read): run.js takes their answers from window.labrig.boot. */
"use strict";
(function () {
  const me = document.currentScript;
  const run = me ? me.dataset.run : "";
  if (!run || !window.fetch) return;
  const base = "/api/runs/" + encodeURIComponent(run);
  // the V/I/T plot's width: the window's less main's and the panel's padding (app.css)
  const n = Math.max(280, (document.documentElement.clientWidth || 650) - 50);
  const get = (path) => fetch(path, { credentials: "same-origin" });
  const L = (window.labrig = window.labrig || {});
  L.boot = { run, n, info: get(base), series: get(`${base}/series?n=${n}`),
    cycles: get(base + "/cycles?fields=plot"), events: get(base + "/events?limit=100") };
})();
