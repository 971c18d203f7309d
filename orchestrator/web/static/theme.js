/* The theme chosen with the header's button (auto: as the system prefers), set before the
   page is drawn so that it does not flash. */
"use strict";
(function () {
  try {
    const t = localStorage.getItem("labrig-theme");
    if (t === "dark" || t === "light") document.documentElement.dataset.theme = t;
  } catch (e) { /* storage may be off: the system's choice */ }
})();
