// kisystem dashboard: charts with one line per name (a model, a domain), drawn with uPlot.
// Each [data-multi-chart] element names a <script type="application/json"> block written by
// kisystem.web.multichart: {"x": [...], "series": [{"label", "values"}], "y_label", "time", "y_max"}.
// Labels reach the page only through uPlot's legend, which sets them as text (never as HTML).
(function () {
  "use strict";

  var PALETTE = ["#0969da", "#1a7f37", "#c0362c", "#8250df", "#9a6700", "#1b7c83", "#bf3989", "#57606a"];

  // One x value (a day's runs, one run index) would make uPlot span years around it: a day (or 1) either side.
  function xScale(data) {
    if (data.x.length > 1) return { time: data.time };
    var pad = data.time ? 86400 : 1;
    return { time: data.time, auto: false, range: [data.x[0] - pad, data.x[0] + pad] };
  }

  function draw(el) {
    var source = document.getElementById(el.dataset.multiChart);
    if (!source || !window.uPlot) return;
    var data = JSON.parse(source.textContent);
    if (!data.x.length) return;
    var series = [{}].concat(data.series.map(function (s, i) {
      return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true, points: { size: 5 } };
    }));
    var columns = [data.x].concat(data.series.map(function (s) { return s.values; }));
    var yScale = data.y_max === null ? {} : { range: [0, data.y_max] };
    var options = {
      width: Math.max(300, el.clientWidth || 600), height: 240, series: series,
      scales: { x: xScale(data), y: yScale },
      axes: [{}, { label: data.y_label }],
    };
    el.textContent = "";
    el.uplot = new uPlot(options, columns, el);
    el.dataset.drawn = "true";
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-multi-chart]").forEach(draw);
  });
})();
