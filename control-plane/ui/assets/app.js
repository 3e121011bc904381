// agent-bom dashboard: the one script. Pages work without it; it only refreshes live regions,
// asks before destructive actions and selects all rows. No library, no inline script (CSP).
"use strict";

(function () {
  // A live region: <el data-live="/ui/..." [data-live-endpoint="ID"] data-live-interval="5000">.
  // It is re-read when the fleet's event stream (/ui/events) names what it shows: any endpoint
  // for the fleet table, its own endpoint for an endpoint page, everything after a "resync".
  // Only when the stream cannot be opened does it poll every data-live-interval ms instead.
  var MIN_GAP = 1000; // at most one re-read per second per region, however many events come

  function Region(el) {
    this.el = el;
    this.url = el.getAttribute("data-live");
    this.only = el.getAttribute("data-live-endpoint");
    this.every = Math.max(parseInt(el.getAttribute("data-live-interval") || "5000", 10), 1000);
    this.last = null;
    this.busy = false;
    this.due = false;
    this.lastRun = 0;
  }

  Region.prototype.wants = function (endpointId) {
    return !this.only || this.only === endpointId;
  };

  // Ask for a re-read; runs now, or once the gap has passed or the tab is visible again.
  Region.prototype.schedule = function () {
    this.due = true;
    var self = this;
    if (this.busy || document.hidden) return;
    var wait = this.lastRun + MIN_GAP - Date.now();
    if (wait > 0) {
      if (!this.timer) this.timer = setTimeout(function () { self.timer = null; self.schedule(); }, wait);
      return;
    }
    this.run();
  };

  Region.prototype.run = function () {
    var self = this, el = this.el;
    this.due = false;
    this.busy = true;
    this.lastRun = Date.now();
    fetch(this.url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/ui/login"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null || html === self.last) return;
        self.last = html;
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
      .catch(function () { /* the next event or tick tries again */ })
      .then(function () {
        self.busy = false;
        if (self.due) self.schedule();
      });
  };

  function poll(regions) {
    document.body.setAttribute("data-live-mode", "poll");
    regions.forEach(function (r) {
      if (r.pollTimer) return;
      r.pollTimer = setInterval(function () { r.schedule(); }, r.every);
    });
  }

  function stream(regions) {
    if (!window.EventSource) { poll(regions); return; }
    var source = new EventSource("/ui/events");
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live-mode", "stream");
    });
    source.addEventListener("endpoint", function (ev) {
      var change;
      try { change = JSON.parse(ev.data); } catch (e) { return; }
      regions.forEach(function (r) { if (r.wants(change.endpoint_id)) r.schedule(); });
    });
    // Changes may have been missed (a reconnect elsewhere, a slow reader): read everything.
    source.addEventListener("resync", function () {
      regions.forEach(function (r) { r.schedule(); });
    });
    source.addEventListener("error", function () {
      // A refused stream (signed out, no permission) is closed for good; a dropped one
      // reconnects by itself with the last event id. Poll only while it cannot.
      if (source.readyState === EventSource.CLOSED) {
        poll(regions);
        regions.forEach(function (r) { r.schedule(); });
      } else {
        document.body.setAttribute("data-live-mode", "reconnecting");
      }
    });
  }

  // Events that came while the tab was hidden are applied when it shows again.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) return;
    (window.__liveRegions || []).forEach(function (r) { if (r.due) r.schedule(); });
  });

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
    var regions = [];
    document.querySelectorAll("[data-live]").forEach(function (el) { regions.push(new Region(el)); });
    window.__liveRegions = regions;
    if (regions.length) stream(regions);
  });
})();
