// The dispatch board's only script: live sections over Server-Sent Events, ages that count.
// No build step. The page works without it (reload to refresh); with it, sections are
// replaced as the gateway changes, keeping the keyboard focus where it was.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var zone = document.body.getAttribute("data-zone") || undefined;
  var offset = 0; // gateway clock minus this browser's clock, ms
  window.boardVersion = 0;

  function say(text) { if (live) { live.textContent = text; } }

  function ageText(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 90) { return Math.round(seconds) + " s old"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min old"; }
    if (seconds < 2 * 86400) { return (seconds / 3600).toFixed(1) + " h old"; }
    return (seconds / 86400).toFixed(1) + " days old";
  }

  function left(seconds) {
    if (seconds < 90) { return Math.max(0, Math.round(seconds)) + " s"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min"; }
    return (seconds / 3600).toFixed(1) + " h";
  }

  function tick() {
    var now = Date.now() + offset;
    document.querySelectorAll(".age[data-t]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-t"));
      if (!isNaN(t)) { el.textContent = ageText((now - t) / 1000); }
    });
    document.querySelectorAll(".countdown[data-t]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-t"));
      var label = el.getAttribute("data-label") || "escalates to hold";
      if (isNaN(t)) { return; }
      var s = (t - now) / 1000;
      el.textContent = s > 0 ? label + " in " + left(s) : label + ": due now";
    });
  }

  function apply(data) {
    var focused = document.activeElement && document.activeElement.id;
    Object.keys(data.sections).forEach(function (name) {
      var box = document.getElementById("sec-" + name);
      if (box) { box.innerHTML = data.sections[name]; }
    });
    Object.keys(data.rows || {}).forEach(function (id) {
      var row = document.getElementById(id);
      if (row) { row.outerHTML = data.rows[id]; }
    });
    if (focused) {
      var again = document.getElementById(focused);
      if (again) { again.focus(); }
    }
    if (data.at) { offset = Date.parse(data.at) - Date.now(); }
    window.boardVersion = data.version;
    tick();
    var at = data.at ? new Date(Date.parse(data.at)) : new Date();
    say("Live updates: on, last change " + at.toLocaleTimeString("en-GB", {timeZone: zone}));
  }

  if (window.EventSource) {
    var source = new EventSource("/events");
    source.addEventListener("sections", function (e) { apply(JSON.parse(e.data)); });
    source.addEventListener("bye", function () { window.location = "/login"; });
    source.addEventListener("open", function () { say("Live updates: on"); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Live updates: off (logged out?) — reload the page");
      } else {
        say("Live updates: reconnecting…");
      }
    });
  } else {
    say("Live updates: not supported by this browser — reload to refresh");
  }
  tick();
  setInterval(tick, 1000);
})();
