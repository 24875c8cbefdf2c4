// A pool's activity: hand-outs, redemptions and releases per minute, and when it runs dry.
//
// Drawn with the vendored Chart.js (window.Chart, loaded by console.html); the same
// numbers are in a table beside it, for screen readers and for checking.

import { ApiError, api, projectPath } from "./api.js";
import { fill, fmt, h, table } from "./dom.js";

const MINUTES = 60;
const SERIES = [
  ["issued", "Handed out", "#b1003e"],
  ["redeemed", "Redeemed", "#1f7a4d"],
  ["released", "Released", "#8a8f98"],
];

export function activityChart(poolId) {
  const canvas = h("canvas", { role: "img", "aria-label": `Codes handed out, redeemed and released per minute, last ${MINUTES} minutes` });
  const box = h("div", { class: "chart-box" }, canvas);
  const forecast = h("p", { class: "forecast", role: "status" });
  const data = h("div");
  const details = h("details", {}, h("summary", {}, "Chart data as a table"), data);
  const section = h("section", { class: "card", "aria-labelledby": "activity-title" },
    h("h2", { id: "activity-title" }, `Activity, last ${MINUTES} minutes`), forecast, box, details);
  let chart = null;
  let available = true;

  const draw = (stats) => {
    const labels = stats.series.map((p) => fmt.minute(p.t));
    if (!chart) {
      chart = new window.Chart(canvas, {
        type: "line",
        data: {
          labels,
          datasets: SERIES.map(([key, label, color]) => ({
            label,
            data: stats.series.map((p) => p[key]),
            borderColor: color,
            backgroundColor: `${color}22`,
            fill: key === "issued",
            borderWidth: 2,
            pointRadius: 0,
            pointHoverRadius: 3,
            tension: 0.25,
          })),
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: {
            x: { grid: { display: false }, ticks: { maxTicksLimit: 12 } },
            y: { beginAtZero: true, ticks: { precision: 0 } },
          },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        },
      });
    } else {
      chart.data.labels = labels;
      SERIES.forEach(([key], i) => { chart.data.datasets[i].data = stats.series.map((p) => p[key]); });
      chart.update("none");
    }
  };

  const showForecast = (stats) => {
    const rate = `${Number(stats.rate_per_minute).toLocaleString("en-US", { maximumFractionDigits: 1 })} codes a minute`;
    fill(forecast, stats.empty_at === null || stats.empty_at === undefined
      ? `Not being handed out right now (${rate}).`
      : `At ${rate}, runs dry at ${fmt.time(stats.empty_at)}.`);
  };

  const showTable = (stats) => {
    // Minutes with activity only: an hour of zeros says nothing.
    const active = stats.series.filter((p) => p.issued || p.redeemed || p.released);
    fill(data, table("~Activity per minute", [
      ["Minute", (p) => fmt.time(p.t)],
      ["Handed out", (p) => String(p.issued)],
      ["Redeemed", (p) => String(p.redeemed)],
      ["Released", (p) => String(p.released)],
    ], active, "No activity in this window."));
  };

  const refresh = async () => {
    if (!available) return;
    let stats;
    try {
      stats = await api("GET", projectPath("pools", poolId, "stats"), { query: { minutes: MINUTES } });
    } catch (err) {
      // A server without the stats endpoint: say so once and stop asking.
      if (err instanceof ApiError && (err.status === 404 || err.status === 405) && err.code !== "pool_not_found") {
        available = false;
        box.hidden = true;
        details.hidden = true;
        fill(forecast, "Stats not available on this server.");
        return;
      }
      throw err;
    }
    showForecast(stats);
    showTable(stats);
    draw(stats);
  };

  return { section, refresh, destroy: () => chart?.destroy() };
}
