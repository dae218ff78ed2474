// Curves view: train/val loss, learning rate, tokens/s and grad norm against step for the chosen
// jobs, live from the events stream; log scale and EMA smoothing; val ppl and bpc beside.
import * as api from './api.js';
import { store } from './store.js';
import { feed } from './feed.js';
import { StepChart } from './chart.js';
import { SweepPanel } from './sweep_view.js';
import { h, clear, ema, fmtNum, jobColor, throttle } from './util.js';

const SMOOTHING_KEY = 'ktl.smoothing';
const LOG_KEY = 'ktl.logScale';

export class CurvesView {
  constructor(root) {
    this.root = root;
    this.watched = new Set();
    this.visible = false;
    this.smoothing = Number(localStorage.getItem(SMOOTHING_KEY) ?? 0.6);
    this.log = localStorage.getItem(LOG_KEY) === '1';
    this.draw = throttle(() => this.render(), 250);
    this.build();
    store.on('jobs', () => this.visible && this.syncWatch());
    store.on('chartJobs', () => this.visible && this.syncWatch());
    feed.on((id, what) => this.visible && what === 'metrics' && this.watched.has(id) && this.draw());
  }

  build() {
    this.picker = h('div', { class: 'job-picker', id: 'curves-jobs' });
    const smoothLabel = h('output', { class: 'mono', id: 'curves-smoothing-value' }, this.smoothing.toFixed(2));
    const controls = h(
      'div',
      { class: 'controls' },
      h(
        'label',
        { class: 'switch' },
        h('input', {
          type: 'checkbox',
          id: 'curves-log',
          checked: this.log,
          onchange: (ev) => {
            this.log = ev.target.checked;
            localStorage.setItem(LOG_KEY, this.log ? '1' : '0');
            this.render();
          },
        }),
        'Log scale',
      ),
      h(
        'label',
        { class: 'slider' },
        'Smoothing',
        h('input', {
          type: 'range',
          id: 'curves-smoothing',
          min: 0,
          max: 0.99,
          step: 0.01,
          value: this.smoothing,
          oninput: (ev) => {
            this.smoothing = Number(ev.target.value);
            smoothLabel.textContent = this.smoothing.toFixed(2);
            localStorage.setItem(SMOOTHING_KEY, String(this.smoothing));
            this.draw();
          },
        }),
        smoothLabel,
      ),
    );
    const chartCard = (id, title, sub) => {
      const box = h('div', { class: 'chart', id });
      const card = h('div', { class: 'card chart-card', 'data-chart': id }, h('div', { class: 'card-head' }, h('h3', {}, title), h('span', { class: 'muted small' }, sub || '')), box);
      return { card, box };
    };
    const loss = chartCard('chart-loss', 'Loss', 'train (solid, smoothed) · val (dashed)');
    const lr = chartCard('chart-lr', 'Learning rate');
    const tps = chartCard('chart-tps', 'Tokens / s', 'training throughput');
    const grad = chartCard('chart-grad', 'Gradient norm', 'before clipping');
    const task = chartCard('chart-task', 'Task accuracy', 'acc solid · acc_norm dashed');
    this.stats = h('div', { class: 'stats', id: 'curves-stats' });
    this.noJobs = h('div', { class: 'empty', id: 'curves-empty' }, 'No jobs to plot yet. Submit a training job in ', h('a', { href: '#jobs' }, 'Jobs'), '; its curves fill in live while it trains.');
    this.root.append(
      h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Curves'), controls), this.picker, this.noJobs),
      h('div', { class: 'loss-row' }, loss.card, h('div', { class: 'card stats-card' }, h('h3', {}, 'Latest'), this.stats)),
      h('div', { class: 'chart-grid' }, lr.card, tps.card, grad.card, task.card),
    );
    this.sweepRoot = h('div', { class: 'sweeps', id: 'curves-sweeps' });
    this.root.append(this.sweepRoot);
    this.sweeps = new SweepPanel(this.sweepRoot);
    this.cards = { loss: loss.card, lr: lr.card, tps: tps.card, grad: grad.card, task: task.card };
    this.charts = {
      loss: new StepChart(loss.box, { height: 280 }),
      lr: new StepChart(lr.box, { height: 180, yFormat: (v) => (v === 0 ? '0' : v.toExponential(0)) }),
      tps: new StepChart(tps.box, { height: 180 }),
      grad: new StepChart(grad.box, { height: 180 }),
      task: new StepChart(task.box, { height: 180 }),
    };
  }

  show(arg) {
    this.visible = true;
    if (arg !== undefined) store.setCharted(arg, true);
    this.syncWatch();
    this.render();
  }

  hide() {
    this.visible = false;
    for (const id of this.watched) feed.unwatch(id);
    this.watched.clear();
  }

  /** Jobs on the charts: the chosen ones that exist, else the newest job. */
  plotted() {
    const chosen = store.jobs.filter((j) => store.chartJobs.has(String(j.id)));
    return chosen.length ? chosen : store.jobs.slice(0, 1);
  }

  syncWatch() {
    const want = new Set(this.plotted().map((j) => String(j.id)));
    for (const id of this.watched) if (!want.has(id)) feed.unwatch(id);
    for (const id of want) if (!this.watched.has(id)) feed.watch(id);
    this.watched = want;
    this.renderPicker();
    this.draw();
  }

  renderPicker() {
    clear(this.picker);
    this.noJobs.hidden = store.jobs.length > 0;
    const plotted = new Set(this.plotted().map((j) => String(j.id)));
    for (const job of store.jobs) {
      const id = String(job.id);
      const on = plotted.has(id);
      this.picker.append(
        h(
          'button',
          {
            type: 'button',
            class: `chip${on ? ' on' : ''}`,
            'aria-pressed': on ? 'true' : 'false',
            'data-job-id': id,
            onclick: () => {
              // Start from what is on screen (it may be the newest-job fallback).
              const next = new Set(plotted);
              if (on) next.delete(id);
              else next.add(id);
              store.setChartJobs(next);
            },
          },
          h('span', { class: 'swatch', style: { background: jobColor(id) } }),
          `#${id} ${job.name}`,
          h('span', { class: `dot-status status-${job.status}`, title: job.status }),
        ),
      );
    }
  }

  render() {
    if (!this.visible) return;
    const jobs = this.plotted();
    const w = this.smoothing;
    const loss = [];
    const simple = { lr: [], tps: [], grad: [], task: [] };
    for (const job of jobs) {
      const id = String(job.id);
      const color = jobColor(id);
      const tag = `#${id}`;
      const train = feed.series(id, api.METRIC.trainLoss);
      if (w > 0 && train.steps.length) {
        loss.push({ label: `${tag} train raw`, color: `${color}40`, width: 1, steps: train.steps, values: train.values, hideLegend: true });
      }
      loss.push({ label: `${tag} train`, color, width: 2, steps: train.steps, values: ema(train.values, w) });
      const val = feed.series(id, api.METRIC.valLoss);
      loss.push({ label: `${tag} val`, color, width: 2, dash: [6, 4], points: true, steps: val.steps, values: val.values });
      const one = (key, list, smooth) => {
        const s = feed.series(id, key);
        list.push({ label: tag, color, width: 1.75, steps: s.steps, values: smooth ? ema(s.values, w) : s.values });
      };
      one(api.METRIC.lr, simple.lr, false);
      one(api.METRIC.tokensPerS, simple.tps, true);
      one(api.METRIC.gradNorm, simple.grad, true);
      for (const name of api.taskNames(feed.keys(id))) {
        const acc = feed.series(id, api.taskMetric(name));
        const norm = feed.series(id, api.taskMetric(name, 'acc_norm'));
        simple.task.push({ label: `${tag} ${name}`, color, width: 1.75, points: true, steps: acc.steps, values: acc.values });
        simple.task.push({ label: `${tag} ${name} norm`, color, width: 1, dash: [4, 3], steps: norm.steps, values: norm.values, hideLegend: true });
      }
    }
    this.setPoints('loss', this.charts.loss.update(loss, { log: this.log }));
    this.setPoints('lr', this.charts.lr.update(simple.lr));
    this.setPoints('tps', this.charts.tps.update(simple.tps));
    this.setPoints('grad', this.charts.grad.update(simple.grad, { log: this.log }));
    this.cards.task.hidden = simple.task.length === 0;  // only jobs with task_eval have it
    this.setPoints('task', this.charts.task.update(simple.task));
    this.renderStats(jobs);
    this.sweeps.update(jobs, { log: this.log });
  }

  setPoints(name, n) {
    this.cards[name].dataset.points = String(n);
  }

  renderStats(jobs) {
    clear(this.stats);
    if (!jobs.length) {
      this.stats.append(h('p', { class: 'muted small' }, 'Pick a job above.'));
      return;
    }
    for (const job of jobs) {
      const id = String(job.id);
      const latest = (key) => feed.latest(id, key) || ((job.metrics || {})[key] !== undefined ? { value: job.metrics[key] } : null);
      const train = latest(api.METRIC.trainLoss);
      const val = latest(api.METRIC.valLoss);
      const ppl = latest(api.METRIC.valPpl);
      const bpc = latest(api.METRIC.valBpc);
      const tps = latest(api.METRIC.tokensPerS);
      const chrf = latest(api.METRIC.valChrf);
      const rougeL = latest(api.METRIC.valRougeL);
      const row = (label, v, digits = 4, cls = '') => h('div', { class: `stat ${cls}` }, h('span', { class: 'muted' }, label), h('span', { class: 'mono' }, v ? fmtNum(v.value, digits) : '–'));
      this.stats.append(
        h(
          'div',
          { class: 'stat-block', 'data-job-id': id },
          h('div', { class: 'stat-title' }, h('span', { class: 'swatch', style: { background: jobColor(id) } }), h('span', {}, `#${id} ${job.name}`)),
          h('div', { class: 'muted small' }, `${job.status} · step ${train ? (train.step ?? job.step) : job.step}${job.total ? ` / ${job.total}` : ''}`),
          row('train loss', train),
          row('val loss', val),
          row('val ppl', ppl, 4, 'stat-ppl'),
          row('val bpc', bpc, 4, 'stat-bpc'),
          row('tokens/s', tps, 4),
          // SFT jobs: the held-out answers' scores next to the loss curves.
          chrf ? row('val chrF', chrf, 4, 'stat-chrf') : null,
          rougeL ? row('val ROUGE-L', rougeL, 4, 'stat-rouge') : null,
          ...api.taskNames(feed.keys(id)).map((name) => row(`${name} acc`, latest(api.taskMetric(name)), 4, 'stat-task')),
        ),
      );
    }
  }
}
