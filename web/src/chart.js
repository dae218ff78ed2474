// A step-vs-value line chart on uPlot: several series (one or more per job) aligned on the union
// of their steps, log or linear y, resized with its container. Rebuilt only when the set of
// series or the scale changes; otherwise data is swapped in place.
import uPlot from '../node_modules/uplot/dist/uPlot.esm.js';
import { fmtNum } from './util.js';

const AXIS = '#64748b';
const GRID = '#edf0f5';
// Whole-step tick spacings for the x axis (never "12.5").
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 1e4, 2e4, 2.5e4, 5e4, 1e5, 2e5, 5e5, 1e6];

/** Aligns [{steps, values}] on the sorted union of steps; missing points are null. */
export function align(series) {
  const all = new Set();
  for (const s of series) for (const x of s.steps) all.add(x);
  const xs = [...all].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = series.map((s) => {
    const out = new Array(xs.length).fill(null);
    s.steps.forEach((x, i) => (out[index.get(x)] = s.values[i]));
    return out;
  });
  return [xs, ...ys];
}

export class StepChart {
  /** container: element to draw in; opts: {height, yFormat} */
  constructor(container, opts = {}) {
    this.container = container;
    this.height = opts.height || 220;
    this.yFormat = opts.yFormat || ((v) => fmtNum(v, 3));
    this.plot = null;
    this.shape = '';
    this.empty = container.appendChild(document.createElement('div'));
    this.empty.className = 'chart-empty';
    this.empty.textContent = 'no points yet';
    new ResizeObserver(() => this.resize()).observe(container);
  }

  width() {
    return Math.max(200, Math.floor(this.container.clientWidth));
  }

  resize() {
    if (this.plot && this.container.clientWidth > 0) this.plot.setSize({ width: this.width(), height: this.height });
  }

  /**
   * series: [{label, color, steps, values, width?, dash?, points?, hideLegend?}]; log: log10 y.
   * Returns the number of plotted (non-null) points.
   */
  update(series, { log = false } = {}) {
    const clean = series.map((s) => ({
      ...s,
      values: s.values.map((v) => (v === null || !Number.isFinite(v) || (log && v <= 0) ? null : v)),
    }));
    const data = align(clean);
    const points = clean.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0);
    this.empty.hidden = points > 0;
    const shape = JSON.stringify([log, clean.map((s) => [s.label, s.color, s.width, s.dash, s.points, s.hideLegend])]);
    if (!this.plot || shape !== this.shape || this.container.clientWidth === 0) {
      this.rebuild(clean, data, log);
      this.shape = shape;
    } else {
      this.plot.setData(data);
    }
    return points;
  }

  rebuild(series, data, log) {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    if (this.container.clientWidth === 0) return; // hidden: drawn on the next update
    const fmt = this.yFormat;
    const opts = {
      width: this.width(),
      height: this.height,
      scales: { x: { time: false }, y: log ? { distr: 3, log: 10 } : { auto: true } },
      axes: [
        { stroke: AXIS, grid: { stroke: GRID }, ticks: { stroke: GRID }, incrs: STEP_INCRS, values: (u, vals) => vals.map((v) => fmtNum(v)) },
        { stroke: AXIS, grid: { stroke: GRID }, ticks: { stroke: GRID }, size: 52, values: (u, vals) => vals.map((v) => (v === null ? '' : fmt(v))) },
      ],
      series: [
        { label: 'step', value: (u, v) => (v === null || v === undefined ? '–' : fmtNum(v)) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.width || 1.75,
          dash: s.dash,
          spanGaps: true,
          points: { show: !!s.points, size: 5, fill: s.color },
          value: (u, v) => (v === null || v === undefined ? '–' : fmtNum(v, 4)),
        })),
      ],
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
    };
    this.plot = new uPlot(opts, data, this.container);
    // Faint raw series (shown under their smoothed twins) stay out of the legend.
    const rows = this.plot.root.querySelectorAll('.u-legend .u-series');
    series.forEach((s, i) => {
      if (s.hideLegend && rows[i + 1]) rows[i + 1].style.display = 'none';
    });
  }
}
