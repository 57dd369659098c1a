// creditgate dashboard: live balance over Server-Sent Events, and expiry countdowns.
// Served by creditgate itself; no third-party code.
(function () {
  "use strict";

  function text(id, value) {
    var node = document.getElementById(id);
    if (node && value !== undefined && value !== null && node.textContent !== String(value)) {
      node.textContent = value;
      node.classList.remove("flash");
      void node.offsetWidth; // restart the highlight animation
      node.classList.add("flash");
    }
  }

  function connect(live) {
    var url = live.getAttribute("data-live-url");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url, { withCredentials: true });
    var state = document.getElementById("live-state");
    source.addEventListener("open", function () { if (state) { state.textContent = "live"; } });
    source.addEventListener("error", function () { if (state) { state.textContent = "reconnecting"; } });
    source.addEventListener("balance", function (event) {
      var data = JSON.parse(event.data);
      text("available", data.available);
      text("pending", data.pending);
      text("debt", data.debt);
      text("balance-updated", data.as_of);
      live.setAttribute("data-version", String(data.version));
    });
  }

  function countdowns() {
    var now = Date.now();
    var skew = 0;
    var page = document.querySelector("[data-server-now]");
    if (page) { skew = Date.parse(page.getAttribute("data-server-now")) - now; }
    document.querySelectorAll("[data-expires]").forEach(function (node) {
      var left = Date.parse(node.getAttribute("data-expires")) - (Date.now() + skew);
      if (isNaN(left)) { return; }
      if (left <= 0) { node.textContent = "expired"; return; }
      var s = Math.floor(left / 1000);
      var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
      node.textContent = (d ? d + " d " : "") + h + " h " + m + " min " + (s % 60) + " s";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live-balance");
    if (live) { connect(live); }
    countdowns();
    window.setInterval(countdowns, 1000);
  });
})();
