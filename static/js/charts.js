// Draws the service page's uPlot charts from the JSON the #pool-charts partial embeds
// (json_script "chart-data"), on load and again after htmx swaps in another range.
// Missing samples are null in the data, so uPlot leaves a gap: never a 0.
(function () {
  "use strict";
  var COLORS = {
    in_use: "#2f5bd3", idle: "#1f9d55", max: "#8a94a6", pending: "#d93838",
    acquire_s: "#d68a00", hold_s: "#2f5bd3", timeouts: "#d93838", acquisitions: "#6b4fbb",
    calls: "#6b4fbb", mean_s: "#d68a00" // a statement's page (templates/statements/statement.html)
  };
  var drawn = { source: null, plots: [] };

  function formatValue(unit) {
    return function (u, v) {
      if (v == null) return "—";
      if (v === 0) return "0";
      if (unit === "s") return v < 1 ? +(v * 1000).toFixed(v < 0.01 ? 2 : 0) + " ms" : v.toFixed(2) + " s";
      var text = Math.abs(v) >= 100 || v === Math.round(v) ? String(Math.round(v)) : v.toFixed(2);
      return unit === "/s" ? text + "/s" : text;
    };
  }

  // The time ranges an open finding's evidence refers to, drawn as bands behind the lines
  // (canvas drawing: nothing inline for the CSP to object to).
  var BAND = { crit: "rgba(198, 40, 40, 0.10)", warn: "rgba(239, 108, 0, 0.10)", info: "rgba(96, 125, 139, 0.10)" };
  function drawHighlights(bands) {
    return function (u) {
      if (!bands.length) return;
      var ctx = u.ctx;
      ctx.save();
      bands.forEach(function (b) {
        var x0 = Math.max(u.valToPos(b.start, "x", true), u.bbox.left);
        var x1 = Math.min(u.valToPos(b.end, "x", true), u.bbox.left + u.bbox.width);
        if (x1 <= x0) return;
        ctx.fillStyle = BAND[b.severity] || BAND.info;
        ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
      });
      ctx.restore();
    };
  }

  function draw() {
    var source = document.getElementById("chart-data");
    if (!source || typeof uPlot === "undefined") return;
    if (source === drawn.source) return; // the 10 s poll swapped something else
    drawn.plots.forEach(function (plot) { plot.destroy(); });
    drawn = { source: source, plots: [] };
    var data = JSON.parse(source.textContent);
    data.charts.forEach(function (chart) {
      var box = document.querySelector('[data-chart="' + chart.id + '"] .chart-canvas');
      if (!box) return;
      box.textContent = ""; // a page restored from htmx's history cache holds a stale copy
      var fmt = formatValue(chart.unit);
      var series = [{}].concat(chart.series.map(function (s) {
        return {
          label: s.label, stroke: COLORS[s.field] || "#333", width: 1.5,
          dash: s.field === "max" ? [6, 4] : undefined,
          fill: s.field === "in_use" ? "rgba(47, 91, 211, 0.08)" : undefined,
          spanGaps: false, value: fmt, points: { show: false }
        };
      }));
      var opts = {
        width: Math.max(box.clientWidth, 300), height: 220, series: series,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
        axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return fmt(u, t); }); }, size: 64 }],
        legend: { live: true }, cursor: { drag: { x: false, y: false } },
        hooks: { drawClear: [drawHighlights(data.highlights || [])] }
      };
      var columns = [data.x].concat(chart.series.map(function (s) { return s.values; }));
      drawn.plots.push(new uPlot(opts, columns, box));
    });
  }

  var resizeTimer = null;
  function resize() {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      drawn.plots.forEach(function (plot) {
        var box = plot.root.parentNode;
        plot.setSize({ width: Math.max(box.clientWidth, 300), height: 220 });
      });
    }, 100);
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
  document.addEventListener("htmx:historyRestore", function () { drawn.source = null; draw(); });
  window.addEventListener("resize", resize);
})();
