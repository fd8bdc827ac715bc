// kisystem dashboard: the little script the pages need (no inline scripts: the CSP forbids them).
// - every htmx request carries the CSRF token (the server checks it on anything that changes state);
// - charts are drawn with uPlot from JSON data blocks (<script type="application/json">);
// - a page with [data-live] listens to /events (server-sent events): each run event is added to the
//   live log and makes every [data-refresh-on-event] element reload itself (htmx trigger "run-event").
(function () {
  "use strict";

  var csrf = document.querySelector('meta[name="csrf-token"]');

  document.addEventListener("htmx:configRequest", function (evt) {
    if (csrf) evt.detail.headers["X-CSRF-Token"] = csrf.content;
  });

  var COLORS = { solved: "#1a7f37", failed: "#c0362c" };

  function drawChart(el) {
    var source = document.getElementById(el.dataset.chart);
    if (!source || !window.uPlot) return;
    var data = JSON.parse(source.textContent);
    var names = el.dataset.series.split(",");
    var series = [{}].concat(names.map(function (name) {
      return { label: name, stroke: COLORS[name] || "#0969da", width: 2, points: { size: 5 } };
    }));
    var columns = [data.x].concat(names.map(function (name) { return data[name]; }));
    var width = Math.max(300, el.clientWidth || 600);
    el.textContent = "";
    el.uplot = new uPlot({ width: width, height: 240, series: series, axes: [{}, { label: "runs" }] }, columns, el);
    el.dataset.drawn = "true";
  }

  function addEvent(log, event) {
    var row = document.createElement("tr");
    var cells = [event.ts ? event.ts.slice(11, 19) : "", event.task, event.kind, event.model || "",
                 event.iteration === undefined ? "" : String(event.iteration)];
    cells.forEach(function (text, i) {
      var td = document.createElement("td");
      if (i === 1 && event.run_id) {
        var a = document.createElement("a");
        a.href = "/runs/" + encodeURIComponent(event.run_id);
        a.textContent = text;  // textContent: whatever a task id holds, it stays text
        td.appendChild(a);
      } else {
        td.textContent = text;
      }
      row.appendChild(td);
    });
    log.insertBefore(row, log.firstChild);
    while (log.children.length > 50) log.removeChild(log.lastChild);
  }

  function listen(status) {
    var log = document.getElementById("live-events");
    var pending = null;
    var source = new EventSource(status.dataset.live);
    source.onopen = function () { status.textContent = "live"; status.classList.add("live"); };
    source.onerror = function () { status.textContent = "reconnecting…"; status.classList.remove("live"); };
    source.addEventListener("run_event", function (msg) {
      var event = JSON.parse(msg.data);
      if (log) addEvent(log, event);
      status.dataset.lastEventId = msg.lastEventId;
      if (pending) return;  // at most one refresh a second, however many events arrive
      pending = setTimeout(function () {
        pending = null;
        document.querySelectorAll("[data-refresh-on-event]").forEach(function (el) {
          if (window.htmx) htmx.trigger(el, "run-event");
        });
      }, 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart]").forEach(drawChart);
    var live = document.querySelector("[data-live]");
    if (live && window.EventSource) listen(live);
  });
})();
