// spillway's live dashboard: reads /events (one JSON frame per tick, see docs/live.md) and
// charts the last few minutes with uPlot. No network beyond this server.
(function () {
  "use strict";
  var WINDOW_S = 300; // seconds of history kept on the charts
  var COLORS = ["#1565c0", "#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#00838f"];

  var DASHED = [6, 4]; // a series that often lies on another one (goodput on completed)

  // Each chart: its element, the series it draws as [label, value of a frame, dash], and whether its
  // y axis is logarithmic (latencies: a shed answer takes microseconds, a job milliseconds).
  var CHARTS = [
    ["chart-rates", [
      ["offered/s", function (f) { return f.rates.offered_per_s; }],
      ["completed/s", function (f) { return f.rates.completed_per_s; }],
      ["goodput/s", function (f) { return f.rates.goodput_per_s; }, DASHED],
      ["shed/s", function (f) { return f.rates.shed_per_s; }]]],
    ["chart-concurrency", [
      ["in flight", function (f) { return f.in_flight; }],
      ["queued", function (f) { return f.queued; }],
      ["limit", function (f) { return f.limit; }, DASHED],
      ["workers", function (f) { return f.workers; }]]],
    ["chart-latency", [
      ["admitted p50", function (f) { return f.latency_ms.admitted.p50; }],
      ["admitted p99", function (f) { return f.latency_ms.admitted.p99; }],
      ["shed p50", function (f) { return f.latency_ms.shed.p50; }],
      ["shed p99", function (f) { return f.latency_ms.shed.p99; }]], true],
    ["chart-memory", [
      ["RSS MiB", function (f) { return f.rss_bytes == null ? null : f.rss_bytes / 1048576; }]]]
  ];

  var state = { frames: 0, last: null, mode: null, t: [], charts: [] };

  function chartWidth(el) { return Math.max(300, el.clientWidth - 10); }

  function makeChart(spec, i) {
    var el = document.getElementById(spec[0]);
    var series = [{ label: "s" }];
    var data = [state.t];
    spec[1].forEach(function (s, j) {
      series.push({ label: s[0], stroke: COLORS[j % COLORS.length], width: 1.5, dash: s[2], spanGaps: false });
      data.push([]);
    });
    var plot = new uPlot({
      width: chartWidth(el),
      height: 220,
      scales: { x: { time: false }, y: spec[2] ? { distr: 3 } : {} },
      axes: [{ label: "seconds" }, { size: 60 }],
      series: series
    }, data, el);
    return { el: el, spec: spec, data: data, plot: plot, index: i };
  }

  function reset() {
    state.t.length = 0;
    state.charts.forEach(function (c) {
      for (var k = 1; k < c.data.length; k++) { c.data[k].length = 0; }
    });
  }

  function push(frame) {
    var restarted = state.mode !== frame.mode ||
      (state.t.length > 0 && frame.t_s < state.t[state.t.length - 1]);
    if (restarted) { reset(); state.mode = frame.mode; }
    state.t.push(frame.t_s);
    state.charts.forEach(function (c) {
      c.spec[1].forEach(function (s, j) {
        var v = s[1](frame);
        c.data[j + 1].push(v == null ? null : v);
      });
    });
    var old = 0;
    while (old < state.t.length && state.t[old] < frame.t_s - WINDOW_S) { old++; }
    if (old > 0) {
      state.t.splice(0, old);
      state.charts.forEach(function (c) {
        for (var k = 1; k < c.data.length; k++) { c.data[k].splice(0, old); }
      });
    }
    state.charts.forEach(function (c) { c.plot.setData(c.data); });
  }

  function fmt(v, digits) { return v == null ? "-" : Number(v).toFixed(digits); }

  function header(frame) {
    var badge = document.getElementById("state");
    badge.textContent = frame.state;
    badge.className = "state " + frame.state;
    if (frame.summary) { document.getElementById("summary").textContent = frame.summary; }
    var l = frame.latency_ms;
    document.getElementById("now").textContent =
      "mode " + frame.mode + " · t " + fmt(frame.t_s, 1) + " s · offered " + fmt(frame.rates.offered_per_s, 0) +
      "/s · goodput " + fmt(frame.rates.goodput_per_s, 0) + "/s · shed " + fmt(frame.rates.shed_per_s, 0) +
      "/s · in flight " + frame.in_flight + " · queued " + fmt(frame.queued, 0) + " · limit " + fmt(frame.limit, 0) +
      " · workers " + fmt(frame.workers, 0) + " · p99 admitted " + fmt(l.admitted.p99, 1) + " ms, shed " +
      fmt(l.shed.p99, 2) + " ms · RSS " + fmt(frame.rss_bytes == null ? null : frame.rss_bytes / 1048576, 0) + " MiB";
  }

  function onFrame(event) {
    var frame = JSON.parse(event.data);
    state.frames += 1;
    state.last = frame;
    document.getElementById("conn").textContent = "";
    header(frame);
    push(frame);
  }

  function connect() {
    var source = new EventSource("/events");
    source.onmessage = onFrame;
    source.onerror = function () {
      var ended = state.last && (state.last.state === "draining" || state.last.state === "finished");
      document.getElementById("conn").textContent = ended ? "stream ended" : "reconnecting";
    };
  }

  CHARTS.forEach(function (spec, i) { state.charts.push(makeChart(spec, i)); });
  window.addEventListener("resize", function () {
    state.charts.forEach(function (c) { c.plot.setSize({ width: chartWidth(c.el), height: 220 }); });
  });
  // For tests and the curious: the frames received and the data each chart draws.
  window.spillway = {
    frames: function () { return state.frames; },
    points: function () { return state.t.length; },
    last: function () { return state.last; },
    series: function (chart, label) {
      var c = state.charts.filter(function (c) { return c.spec[0] === chart; })[0];
      var j = c.spec[1].map(function (s) { return s[0]; }).indexOf(label);
      return c.data[j + 1].slice();
    }
  };
  connect();
})();
