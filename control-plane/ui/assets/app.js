// agent-bom dashboard: the one script. Pages work without it; it only refreshes live regions,
// asks before destructive actions and selects all rows. No library, no inline script (CSP).
"use strict";

(function () {
  // Live regions: <el data-live="/ui/..." data-live-interval="5000"> re-fetched in place.
  function startLive(el) {
    var url = el.getAttribute("data-live");
    var every = parseInt(el.getAttribute("data-live-interval") || "5000", 10);
    var last = null;
    function tick() {
      if (document.hidden) return;
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (r.status === 401) { window.location.assign("/ui/login"); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null || html === last) return;
          last = html;
          // Keep what the user selected across the refresh.
          var checked = {};
          el.querySelectorAll("input[type=checkbox][name=id]:checked").forEach(function (c) {
            checked[c.value] = true;
          });
          el.innerHTML = html;
          el.querySelectorAll("input[type=checkbox][name=id]").forEach(function (c) {
            if (checked[c.value]) c.checked = true;
          });
          el.setAttribute("data-live-updated", String(Date.now()));
        })
        .catch(function () { /* the next tick tries again */ });
    }
    setInterval(tick, Math.max(every, 1000));
  }

  // <button data-confirm="question"> asks first.
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("[data-confirm]") : null;
    if (b && !window.confirm(b.getAttribute("data-confirm"))) ev.preventDefault();
  });

  // <input type=checkbox data-select-all="id"> toggles the form's row boxes.
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (!t.hasAttribute || !t.hasAttribute("data-select-all")) return;
    var form = t.closest("form");
    if (!form) return;
    form.querySelectorAll("input[type=checkbox][name=" + t.getAttribute("data-select-all") + "]")
      .forEach(function (c) { c.checked = t.checked; });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(startLive);
  });
})();
