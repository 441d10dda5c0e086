// kalam-actors web: live updates, an enhancement only. Every page reads without this file.
// Once a second (while the tab is visible) it fetches the page it is on again and swaps in the
// parts marked data-live; the server renders them, escaped, exactly as on a reload.
(function () {
  "use strict";

  function confirmForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.confirmBound) { return; }
      form.dataset.confirmBound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  function start() {
    confirmForms(document);
    var main = document.querySelector("main[data-live-interval]");
    if (!main || !window.fetch || !window.DOMParser) { return; }
    var interval = Math.max(1000, parseInt(main.dataset.liveInterval, 10) || 1000);
    var busy = false;
    var failures = 0;

    function swap(html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      document.querySelectorAll("[data-live][id]").forEach(function (old) {
        var next = fresh.getElementById(old.id);
        if (next && next.outerHTML !== old.outerHTML) {
          // Keep a region whose form the user is typing into or pressing.
          if (old.contains(document.activeElement) && document.activeElement !== document.body &&
              document.activeElement.tagName !== "A") { return; }
          old.replaceWith(document.importNode(next, true));
        }
      });
      confirmForms(document);
    }

    function tick() {
      if (busy) { return; }
      if (document.hidden) { return schedule(); }
      busy = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) { failures = 0; swap(html); })
        .catch(function () { failures += 1; })
        .then(function () { busy = false; schedule(); });
    }

    function schedule() {
      // Back off while the server does not answer, up to 30 s.
      window.setTimeout(tick, Math.min(30000, interval * Math.pow(2, failures)));
    }

    schedule();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
