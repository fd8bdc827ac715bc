// kisystem dashboard, Overview: the machine's CPU, memory and GPU use over the last minutes, drawn with uPlot.
// Each [data-resource-chart] element names a <script type="application/json"> block written by
// kisystem.web.resources.resource_chart: {"x": [...], "series": [{"key", "label", "values"}], "y_label", "y_max",
// "x_span"}: the x axis always shows the last x_span seconds, however few samples there are yet.
// The panel reloads itself with htmx (hx-select from "/"); each swapped-in chart is drawn again here.
(function () {
  "use strict";

  var COLORS = { cpu: "#0969da", memory: "#8250df", gpu: "#1a7f37", vram: "#9a6700" };

  function clock(t) { return new Date(t * 1000).toISOString().slice(11, 19); }

  function draw(el) {
    var source = document.getElementById(el.dataset.resourceChart);
    if (!source || !window.uPlot) return;
    var data = JSON.parse(source.textContent);
    if (!data.x.length) return;
    var series = [{}].concat(data.series.map(function (s) {
      return { label: s.label, stroke: COLORS[s.key] || "#57606a", width: 2, spanGaps: false, points: { show: false } };
    }));
    var columns = [data.x].concat(data.series.map(function (s) { return s.values; }));
    var options = {
      width: Math.max(300, el.clientWidth || 600), height: 200, series: series,
      scales: {
        x: { time: true, range: function (u, min, max) { return [max - data.x_span, max]; } },
        y: { range: [0, data.y_max] },
      },
      // HH:MM:SS (UTC, as every time on the dashboard): uPlot's own labels read ":45.500" over a few seconds
      axes: [{ values: function (u, splits) { return splits.map(clock); } }, { label: data.y_label }],
    };
    el.textContent = "";
    el.uplot = new uPlot(options, columns, el);
    el.dataset.drawn = "true";
  }

  function drawIn(root) {
    if (root.matches && root.matches("[data-resource-chart]")) draw(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-resource-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawIn(document); });
  document.addEventListener("htmx:load", function (evt) { if (evt.target !== document.body) drawIn(evt.target); });
})();
