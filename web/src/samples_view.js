// Samples view: the generations a job wrote while training, grouped by step (newest first), so
// one can watch the Korean get better. Refreshes while the job runs.
import * as api from './api.js';
import { store } from './store.js';
import { feed } from './feed.js';
import { h, clear, jobColor } from './util.js';

const POLL_MS = 3000;

export class SamplesView {
  constructor(root) {
    this.root = root;
    this.jobId = null;
    this.visible = false;
    this.timer = null;
    this.sig = '';
    this.build();
    store.on('jobs', () => this.visible && this.syncJobs());
    feed.on((id, what) => this.visible && what === 'sample' && id === this.jobId && this.load());
  }

  build() {
    this.select = h('select', { id: 'samples-job', 'aria-label': 'Job', onchange: () => this.pick(this.select.value) });
    this.order = h(
      'select',
      { id: 'samples-order', 'aria-label': 'Order', onchange: () => this.render(this.last || []) },
      h('option', { value: 'desc' }, 'newest step first'),
      h('option', { value: 'asc' }, 'oldest step first'),
    );
    this.list = h('div', { class: 'samples', id: 'samples-list' });
    this.root.append(
      h(
        'div',
        { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Samples'), h('div', { class: 'controls' }, this.select, this.order)),
        this.list,
      ),
    );
  }

  show(arg) {
    this.visible = true;
    if (arg !== undefined) this.jobId = String(arg);
    this.syncJobs();
    this.load();
  }

  hide() {
    this.visible = false;
    clearTimeout(this.timer);
    if (this.watching) feed.unwatch(this.watching);
    this.watching = null;
  }

  syncJobs() {
    const jobs = store.jobs;
    if (!this.jobId || !store.job(this.jobId)) this.jobId = jobs.length ? String(jobs[0].id) : null;
    const options = jobs.map((j) => h('option', { value: String(j.id), selected: String(j.id) === this.jobId }, `#${j.id} ${j.name} · ${j.status}`));
    clear(this.select).append(...options);
    this.select.disabled = jobs.length === 0;
    if (this.visible && this.jobId && this.watching !== this.jobId) {
      if (this.watching) feed.unwatch(this.watching);
      feed.watch(this.jobId); // its events stream tells us when a new sample is written
      this.watching = this.jobId;
      this.load();
    }
    if (!jobs.length) this.render([]);
  }

  pick(id) {
    this.jobId = id;
    this.sig = '';
    history.replaceState(null, '', `#samples/${encodeURIComponent(id)}`);
    this.syncJobs();
    this.load();
  }

  async load() {
    clearTimeout(this.timer);
    const id = this.jobId;
    if (!this.visible || !id) return;
    try {
      const samples = await api.jobSamples(id);
      if (id === this.jobId) this.render(samples);
    } catch (e) {
      if (id === this.jobId) this.render([], e.message);
    }
    const job = store.job(id);
    if (this.visible && job && api.ACTIVE_STATUSES.has(job.status)) this.timer = setTimeout(() => this.load(), POLL_MS);
  }

  /** [[prompt, samples...]] in first-seen order: greedy and sampled continuations side by side. */
  byPrompt(samples) {
    const groups = new Map();
    for (const s of samples) {
      if (!groups.has(s.prompt)) groups.set(s.prompt, []);
      groups.get(s.prompt).push(s);
    }
    return [...groups.entries()];
  }

  render(samples, error) {
    const sig = JSON.stringify([this.jobId, this.order.value, samples.length, samples.at(-1)?.step, error]);
    if (sig === this.sig) return;
    this.sig = sig;
    this.last = samples;
    clear(this.list);
    if (!store.jobs.length) {
      this.list.append(h('div', { class: 'empty' }, 'No jobs yet. Samples appear here while a training job runs.'));
      return;
    }
    if (error) {
      this.list.append(h('div', { class: 'empty error' }, `Could not load samples: ${error}`));
      return;
    }
    if (!samples.length) {
      const job = store.job(this.jobId);
      this.list.append(h('div', { class: 'empty', id: 'samples-empty' }, job && api.ACTIVE_STATUSES.has(job.status) ? 'No samples yet: the trainer writes some every few hundred steps (the job\u2019s sample_steps).' : 'This job wrote no samples.'));
      return;
    }
    const byStep = new Map();
    for (const s of samples) {
      if (!byStep.has(s.step)) byStep.set(s.step, []);
      byStep.get(s.step).push(s);
    }
    const steps = [...byStep.keys()].sort((a, b) => (this.order.value === 'asc' ? a - b : b - a));
    const color = jobColor(this.jobId);
    for (const step of steps) {
      this.list.append(
        h(
          'section',
          { class: 'sample-group', 'data-step': String(step) },
          h('h3', { class: 'sample-step' }, h('span', { class: 'swatch', style: { background: color } }), `step ${step}`),
          this.byPrompt(byStep.get(step)).map(([prompt, variants]) =>
            h(
              'div',
              { class: 'sample-prompt-group' },
              h(
                'div',
                { class: 'sample-variants' },
                variants.map((s) =>
                  h(
                    'div',
                    { class: 'sample ko' },
                    s.kind && s.kind !== 'sample' ? h('div', { class: 'sample-kind' }, s.kind) : null,
                    h(
                      'div',
                      { class: 'sample-body' },
                      prompt ? h('span', { class: 'sample-prompt' }, prompt) : null,
                      s.text.trim() ? h('span', { class: 'sample-text' }, s.text) : h('span', { class: 'sample-blank' }, ' (only spaces or nothing yet)'),
                    ),
                  ),
                ),
              ),
            ),
          ),
        ),
      );
    }
  }
}
