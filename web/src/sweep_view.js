// Sweep panel (under the curves): for each plotted sweep job, every trial's validation loss on
// one chart and the trials ranked by validation loss, with "Save as recipe" once it finished.
import * as api from './api.js';
import { feed } from './feed.js';
import { StepChart } from './chart.js';
import { h, clear, fmtNum, jobColor, throttle } from './util.js';

export class SweepPanel {
  constructor(root) {
    this.root = root;
    this.boxes = new Map(); // job id -> {card, chart, table, status, data}
    this.refresh = throttle(() => this.load(), 2000);
  }

  /** jobs: the plotted jobs; sweeps among them get a card. */
  update(jobs, { log = false } = {}) {
    const sweeps = jobs.filter((j) => j.kind === 'sweep');
    const want = new Set(sweeps.map((j) => String(j.id)));
    for (const [id, b] of this.boxes) if (!want.has(id)) (b.card.remove(), this.boxes.delete(id));
    for (const job of sweeps) {
      const id = String(job.id);
      if (!this.boxes.has(id)) this.boxes.set(id, this.makeCard(job));
      this.draw(id, log);
    }
    this.log = log;
    if (sweeps.length) this.refresh();
  }

  makeCard(job) {
    const id = String(job.id);
    const chartBox = h('div', { class: 'chart', id: `sweep-chart-${id}` });
    const table = h('div', { class: 'sweep-table', id: `sweep-ranking-${id}` });
    const status = h('span', { class: 'muted small' }, '');
    const card = h(
      'div',
      { class: 'card chart-card sweep-card', 'data-job-id': id },
      h('div', { class: 'card-head' }, h('h3', {}, `Sweep #${id} ${job.name}: validation loss per trial`), status),
      chartBox,
      table,
    );
    this.root.append(card);
    return { card, chart: new StepChart(chartBox, { height: 260 }), table, status, data: null };
  }

  async load() {
    for (const [id, b] of this.boxes) {
      try {
        b.data = await api.jobSweep(id);
      } catch (e) {
        b.status.textContent = e.message || String(e);
        continue;
      }
      this.draw(id, this.log);
    }
  }

  draw(id, log) {
    const b = this.boxes.get(id);
    const trials = b.data ? b.data.ranking.map((r) => r.id) : this.trialsFromFeed(id);
    const series = trials.map((t) => {
      const s = feed.series(id, api.trialMetric(t, 'val/loss'));
      return { label: `trial ${t}`, color: jobColor(`${id}.${t}`), width: 1.5, points: true, steps: s.steps, values: s.values };
    });
    b.card.dataset.points = String(b.chart.update(series, { log }));
    this.renderTable(id, b);
  }

  /** Trial ids that have reported metrics (before the first state file exists). */
  trialsFromFeed(id) {
    const e = feed.jobs.get(String(id));
    const ids = new Set();
    if (e) for (const k of e.series.keys()) {
      const m = /^trial\/(\d+)\//.exec(k);
      if (m) ids.add(Number(m[1]));
    }
    return [...ids].sort((a, c) => a - c);
  }

  renderTable(id, b) {
    clear(b.table);
    if (!b.data) return;
    const d = b.data;
    b.status.textContent = d.finished ? 'finished' : `rungs at ${d.rungs.join(', ')} steps`;
    const rows = d.ranking.map((r, i) =>
      h(
        'tr',
        { 'data-trial': String(r.id) },
        h('td', {}, String(i + 1)),
        h('td', {}, h('span', { class: 'swatch', style: { background: jobColor(`${id}.${r.id}`) } }), ` ${r.id}`),
        h('td', { class: 'mono' }, Number.isFinite(r.valLoss) ? fmtNum(r.valLoss, 4) : '–'),
        h('td', { class: 'mono' }, Number.isFinite(r.valBpc) ? fmtNum(r.valBpc, 4) : '–'),
        h('td', { class: 'mono' }, String(r.steps)),
        h('td', {}, r.state),
        h('td', { class: 'mono small' }, Object.entries(r.overrides).map(([k, v]) => `${k}=${v}`).join(', ')),
      ),
    );
    b.table.append(
      h(
        'table',
        { class: 'ranking' },
        h('thead', {}, h('tr', {}, ...['rank', 'trial', 'val loss', 'val bpc', 'steps', 'state', 'config'].map((t) => h('th', {}, t)))),
        h('tbody', {}, ...rows),
      ),
    );
    if (d.recipe) {
      const msg = h('span', { class: 'muted small' }, '');
      const name = h('input', { type: 'text', value: 'tiny', size: 12, 'aria-label': 'recipe name' });
      const save = h(
        'button',
        {
          type: 'button',
          class: 'btn',
          onclick: async () => {
            try {
              const r = await api.saveRecipe(id, name.value.trim());
              msg.textContent = `saved ${r.path}`;
            } catch (e) {
              msg.textContent = e.message || String(e);
            }
          },
        },
        'Save best as recipe',
      );
      b.table.append(h('div', { class: 'controls' }, name, save, msg));
    }
  }
}
