// Draws the backtest chart of an alert rule (admin: the rule's change form and its backtest
// page) from the JSON the backtest partial embeds (json_script "backtest-data"): the signal
// of each matched series, the threshold as a dashed line, and behind them the spans the rule
// would have been pending (amber) and firing (red). Redrawn when htmx swaps in a new preview.
(function () {
  "use strict";
  var PALETTE = ["#2f5bd3", "#1f9d55", "#6b4fbb", "#0f7b8a", "#b5478a", "#8a6d00", "#4a5568", "#c05621"];
  var BAND = { firing: "rgba(217, 56, 56, 0.22)", pending: "rgba(214, 138, 0, 0.16)" };
  var drawn = { source: null, plot: null };

  function formatValue(unit) {
    return function (u, v) {
      if (v == null) return "—";
      if (unit === "%") return (Math.abs(v) < 10 && v !== Math.round(v) ? v.toFixed(1) : Math.round(v)) + " %";
      if (unit === "s") return v < 1 ? +(v * 1000).toFixed(0) + " ms" : v.toFixed(v < 10 ? 2 : 0) + " s";
      return Math.abs(v) >= 100 || v === Math.round(v) ? String(Math.round(v)) : v.toFixed(2);
    };
  }

  function drawBands(bands) {
    return function (u) {
      var ctx = u.ctx;
      ctx.save();
      bands.forEach(function (b) {
        var x0 = Math.max(u.valToPos(b.start, "x", true), u.bbox.left);
        var x1 = Math.min(u.valToPos(b.end, "x", true), u.bbox.left + u.bbox.width);
        if (x1 <= x0) x1 = x0 + 1; // a one-evaluation span is still visible
        ctx.fillStyle = BAND[b.state] || BAND.pending;
        ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
      });
      ctx.restore();
    };
  }

  function draw() {
    var source = document.getElementById("backtest-data");
    if (!source || typeof uPlot === "undefined") return;
    if (source === drawn.source) return;
    if (drawn.plot) drawn.plot.destroy();
    drawn = { source: source, plot: null };
    var data = JSON.parse(source.textContent);
    var box = document.querySelector("#backtest .chart-canvas");
    if (!box || !data.x.length) return;
    box.textContent = "";
    var fmt = formatValue(data.unit);
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
                    value: fmt, points: { show: false } });
      columns.push(s.values);
    });
    series.push({ label: "threshold " + data.comparator + " " + fmt(null, data.threshold), stroke: "#d93838",
                  width: 1.5, dash: [6, 4], value: fmt, points: { show: false } });
    columns.push(data.x.map(function () { return data.threshold; }));
    var opts = {
      width: Math.max(box.clientWidth, 320), height: 260, series: series,
      scales: { x: { time: true }, y: { range: function (u, min, max) {
        var top = Math.max(max, data.threshold);
        return [Math.min(0, min), top > 0 ? top * 1.15 : 1];
      } } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return fmt(u, t); }); }, size: 64 }],
      legend: { live: true }, cursor: { drag: { x: false, y: false } },
      hooks: { drawClear: [drawBands(data.bands || [])] }
    };
    drawn.plot = new uPlot(opts, columns, box);
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      if (!drawn.plot) return;
      var box = drawn.plot.root.parentNode;
      drawn.plot.setSize({ width: Math.max(box.clientWidth, 320), height: 260 });
    }, 100);
  });
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
})();
