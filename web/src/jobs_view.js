// Jobs view: submit form for a training job, and the job list with status, progress, ETA,
// latest losses and actions (cancel, resume, load checkpoint, open curves / samples).
import * as api from './api.js';
import { store } from './store.js';
import { refreshSoon } from './serving_view.js';
import { h, fmtNum, fmtDuration, fmtAgo, jobColor, toast } from './util.js';

const STATUS_LABEL = {
  queued: 'queued',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'cancelled',
  interrupted: 'interrupted',
};

export class JobsView {
  constructor(root) {
    this.root = root;
    this.rows = new Map(); // id -> {el, sig}
    this.build();
    this.adapterNames = new Map(); // checkpoint path -> the name typed for it (rows get rebuilt)
    store.on('jobs', () => this.renderList());
    store.on('adapters', () => this.renderList());
    setInterval(() => !this.root.hidden && this.renderList(), 1000); // ETA / "ago" tick
  }

  build() {
    this.form = this.buildForm();
    this.sftForm = this.buildSftForm();
    this.list = h('div', { class: 'job-list', id: 'job-list', role: 'list' });
    this.empty = h(
      'div',
      { class: 'empty', id: 'jobs-empty' },
      h('strong', {}, 'No jobs yet.'),
      ' Submit one above: a tiny model trains in a few minutes on a laptop CPU, and its loss curve and samples appear here as it learns.',
    );
    this.root.append(
      h('div', { class: 'card' }, this.form),
      h('div', { class: 'card' }, this.sftForm),
      h(
        'div',
        { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Jobs'), h('span', { class: 'muted', id: 'jobs-count' })),
        h(
          'div',
          { class: 'job-head', 'aria-hidden': 'true' },
          h('span', {}, 'Job'),
          h('span', {}, 'Status'),
          h('span', {}, 'Progress'),
          h('span', {}, 'ETA'),
          h('span', {}, 'Loss (train / val)'),
          h('span', {}, ''),
        ),
        this.list,
        this.empty,
      ),
    );
  }

  buildForm() {
    const num = (id, label, value, attrs = {}) =>
      h('label', { class: 'field' }, h('span', {}, label), h('input', { id, type: 'number', value, required: true, ...attrs }));
    const pathInput = h('input', {
      id: 'job-data-path',
      type: 'text',
      placeholder: 'corpus file or directory under the data dir',
      disabled: true,
      spellcheck: 'false',
    });
    const corpusRadio = (value, label, checked) =>
      h(
        'label',
        { class: 'radio' },
        h('input', {
          type: 'radio',
          name: 'corpus',
          value,
          id: `job-corpus-${value}`,
          checked,
          onchange: () => {
            pathInput.disabled = value !== 'path';
            if (value === 'path') pathInput.focus();
          },
        }),
        label,
      );
    const form = h(
      'form',
      { class: 'job-form', id: 'job-form', novalidate: false, onsubmit: (ev) => this.submit(ev) },
      h('div', { class: 'card-head' }, h('h2', {}, 'New training job'), h('span', { class: 'muted' }, 'prepare data → tokenizer → train')),
      h(
        'div',
        { class: 'form-grid' },
        h('label', { class: 'field span-2' }, h('span', {}, 'Name'), h('input', { id: 'job-name', type: 'text', value: 'tiny-ko', required: true, maxlength: 80 })),
        h(
          'fieldset',
          { class: 'field span-2 corpus' },
          h('legend', {}, 'Corpus'),
          h('div', { class: 'radios' }, corpusRadio('default', 'Default Korean corpus', true), corpusRadio('path', 'Path', false)),
          pathInput,
        ),
        h(
          'label',
          { class: 'field' },
          h('span', {}, 'Model'),
          h(
            'select',
            { id: 'job-model' },
            h('option', { value: 'tiny', selected: true }, 'tiny · ~3M params'),
            h('option', { value: 'small' }, 'small · ~100M params'),
          ),
        ),
        num('job-max-steps', 'Max steps', 200, { min: 1, step: 1 }),
        num('job-batch-size', 'Batch size', 8, { min: 1, step: 1 }),
        num('job-lr', 'Learning rate', 0.0006, { min: 0, step: 'any' }),
      ),
      h(
        'details',
        { class: 'advanced' },
        h('summary', {}, 'More options: tokenizer, validation split, context, schedule'),
        h(
          'div',
          { class: 'form-grid' },
          num('job-vocab-size', 'Tokenizer vocabulary', '', { min: 300, step: 1, placeholder: 'auto: the model’s', required: false }),
          num('job-val-fraction', 'Validation share', '', { min: 0, max: 0.5, step: 'any', placeholder: 'default 0.01', required: false }),
          num('job-seq-length', 'Context length (tokens)', '', { min: 8, step: 1, placeholder: 'default 256', required: false }),
          num('job-warmup-steps', 'Warm-up steps', '', { min: 0, step: 1, placeholder: 'auto: 10% of max', required: false }),
          num('job-log-steps', 'Log every (steps)', 5, { min: 1, step: 1 }),
          num('job-eval-steps', 'Eval every (steps)', 50, { min: 1, step: 1 }),
          num('job-sample-steps', 'Sample every (steps)', 50, { min: 1, step: 1 }),
          num('job-save-steps', 'Checkpoint every (steps)', 100, { min: 1, step: 1 }),
        ),
      ),
      h('div', { class: 'row-end' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'job-submit' }, 'Start training')),
    );
    return form;
  }

  /** Instruction tuning of an existing checkpoint on chat data (`ktl sft`). */
  buildSftForm() {
    const num = (id, label, value, attrs = {}) =>
      h('label', { class: 'field' }, h('span', {}, label), h('input', { id, type: 'number', value, ...attrs }));
    const text = (id, label, value, placeholder) =>
      h('label', { class: 'field span-2' }, h('span', {}, label), h('input', { id, type: 'text', value, placeholder, required: true, spellcheck: 'false' }));
    return h(
      'form',
      { class: 'job-form', id: 'sft-form', onsubmit: (ev) => this.submitSft(ev) },
      h('div', { class: 'card-head' }, h('h2', {}, 'Instruction tuning (SFT)'), h('span', { class: 'muted' }, 'checkpoint + chat data → chat model')),
      h(
        'div',
        { class: 'form-grid' },
        text('sft-name', 'Name', 'tiny-ko-chat', ''),
        text('sft-init-from', 'Checkpoint', '', 'e.g. jobs/1/checkpoints/final'),
        text('sft-data', 'Chat data', '', '.jsonl {"messages": [...]} or question/answer .tsv'),
        num('sft-max-steps', 'Max steps', 300, { min: 1, step: 1, required: true }),
        num('sft-batch-size', 'Batch size', 8, { min: 1, step: 1, required: true }),
        num('sft-lr', 'Learning rate', 0.0001, { min: 0, step: 'any', required: true }),
        num('sft-val-fraction', 'Held-out share (val)', 0.05, { min: 0, max: 0.5, step: 'any' }),
        num('sft-eval-steps', 'Eval every (steps)', 50, { min: 1, step: 1 }),
        num('sft-sample-steps', 'Answer samples every (steps)', 50, { min: 1, step: 1 }),
        h('label', { class: 'field checkbox' }, h('input', { id: 'sft-no-pack', type: 'checkbox' }), h('span', {}, 'One conversation per row (no packing)')),
      ),
      h('div', { class: 'row-end' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'sft-submit' }, 'Start SFT')),
    );
  }

  async submitSft(ev) {
    ev.preventDefault();
    const f = this.sftForm;
    const val = (id) => f.querySelector(`#${id}`).value.trim();
    const numOrNull = (id) => (val(id) === '' ? null : Number(val(id)));
    const spec = api.buildSftJobSpec({
      name: val('sft-name'),
      initFrom: val('sft-init-from'),
      data: val('sft-data'),
      maxSteps: numOrNull('sft-max-steps'),
      batchSize: numOrNull('sft-batch-size'),
      learningRate: numOrNull('sft-lr'),
      valFraction: numOrNull('sft-val-fraction'),
      evalSteps: numOrNull('sft-eval-steps'),
      sampleSteps: numOrNull('sft-sample-steps'),
      noPack: f.querySelector('#sft-no-pack').checked,
    });
    const button = f.querySelector('#sft-submit');
    button.disabled = true;
    try {
      const job = await api.createJob(spec);
      store.upsertJob(job);
      store.setCharted(job.id, true);
      toast(`SFT job #${job.id} “${job.name}” submitted`, 'ok');
      store.refreshJobs().catch(() => {});
    } catch (e) {
      toast(`Could not submit: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  async submit(ev) {
    ev.preventDefault();
    const f = this.form;
    const val = (id) => f.querySelector(`#${id}`).value.trim();
    const numOrNull = (id) => (val(id) === '' ? null : Number(val(id)));
    const corpus = f.querySelector('input[name=corpus]:checked').value;
    if (corpus === 'path' && !val('job-data-path')) {
      toast('Enter a corpus path, or pick the default corpus.', 'error');
      return;
    }
    const spec = api.buildTrainJobSpec({
      name: val('job-name'),
      corpus,
      dataPath: val('job-data-path'),
      model: val('job-model'),
      maxSteps: numOrNull('job-max-steps'),
      batchSize: numOrNull('job-batch-size'),
      learningRate: numOrNull('job-lr'),
      warmupSteps: numOrNull('job-warmup-steps'),
      vocabSize: numOrNull('job-vocab-size'),
      valFraction: numOrNull('job-val-fraction'),
      seqLength: numOrNull('job-seq-length'),
      logSteps: numOrNull('job-log-steps'),
      evalSteps: numOrNull('job-eval-steps'),
      sampleSteps: numOrNull('job-sample-steps'),
      saveSteps: numOrNull('job-save-steps'),
    });
    const button = f.querySelector('#job-submit');
    button.disabled = true;
    try {
      const job = await api.createJob(spec);
      store.upsertJob(job);
      store.setCharted(job.id, true);
      toast(`Job #${job.id} “${job.name}” submitted`, 'ok');
      store.refreshJobs().catch(() => {});
    } catch (e) {
      toast(`Could not submit: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  async act(job, action) {
    try {
      if (action === 'cancel') {
        await api.cancelJob(job.id);
        toast(`Cancelling job #${job.id} (it saves a checkpoint first)`);
      } else if (action === 'resume') {
        await api.resumeJob(job.id);
        toast(`Job #${job.id} resumes from its last checkpoint`, 'ok');
      } else if (action === 'load') {
        await api.loadModel({ jobId: job.id });
        toast(`Loading job #${job.id}'s newest checkpoint…`, 'ok');
        refreshSoon();
      }
      store.refreshJobs().catch(() => {});
    } catch (e) {
      toast(`${action} failed: ${e.message}`, 'error');
    }
  }

  renderList() {
    const jobs = store.jobs;
    this.empty.hidden = jobs.length > 0;
    const running = jobs.filter((j) => j.status === 'running').length;
    this.root.querySelector('#jobs-count').textContent = jobs.length ? `${jobs.length} total · ${running} running` : '';
    const seen = new Set();
    let prev = null;
    for (const job of jobs) {
      const id = String(job.id);
      seen.add(id);
      const eta = store.etaSeconds(job);
      // Rows are rebuilt only when their data changes (a rebuilt button would lose a click);
      // the ticking texts (ETA, "3m ago") are updated in place.
      const lora = api.jobLora(job);
      const served = lora ? store.adapters.map((a) => [a.path, a.name, a.state]) : null;
      const sig = JSON.stringify([job.status, job.cancelRequested, job.step, job.total, job.metrics, job.checkpoints?.length, job.error, job.name, job.kind, lora, served]);
      let row = this.rows.get(id);
      if (!row || row.sig !== sig) {
        const el = this.renderRow(job, eta);
        if (row) row.el.replaceWith(el);
        row = { el, sig };
        this.rows.set(id, row);
      }
      row.el.querySelector('.job-ago').textContent = fmtAgo(job.createdAt);
      row.el.querySelector('.job-eta-text').textContent = this.etaText(job, eta);
      // Keep DOM order = list order.
      const want = prev ? prev.nextSibling : this.list.firstChild;
      if (want !== row.el) this.list.insertBefore(row.el, want);
      prev = row.el;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
  }

  etaText(job, eta) {
    if (job.status === 'running') return eta !== null ? fmtDuration(eta) : 'estimating…';
    if (job.finishedAt && job.startedAt) return `took ${fmtDuration((job.finishedAt - job.startedAt) / 1000)}`;
    return '–';
  }

  renderRow(job, eta) {
    const pct = job.total ? Math.min(100, (100 * job.step) / job.total) : job.status === 'succeeded' ? 100 : 0;
    const m = job.metrics || {};
    const train = m[api.METRIC.trainLoss];
    const valLoss = m[api.METRIC.valLoss];
    const button = (action, label, cls = 'btn-ghost') =>
      h('button', { type: 'button', class: `btn btn-sm ${cls}`, 'data-action': action, onclick: () => this.act(job, action) }, label);
    const actions = [];
    if (api.ACTIVE_STATUSES.has(job.status) && !job.cancelRequested) actions.push(button('cancel', 'Cancel', 'btn-danger'));
    if (api.RESUMABLE_STATUSES.has(job.status)) actions.push(button('resume', 'Resume'));
    // A checkpoint can be served as soon as one exists, even while the job still trains.
    const trains = job.kind === 'train' || job.kind === 'pipeline' || job.kind === 'distill' || !job.kind;
    const hasCheckpoint = job.checkpoints ? job.checkpoints.length > 0 : api.LOADABLE_STATUSES.has(job.status);
    const lora = api.jobLora(job);
    // A LoRA checkpoint is no model of its own: it is served beside its base ("Serve adapter").
    if (trains && hasCheckpoint && !lora) actions.push(button('load', 'Load model'));
    const statusText = job.cancelRequested && api.ACTIVE_STATUSES.has(job.status) ? 'cancelling' : STATUS_LABEL[job.status] || job.status;
    return h(
      'div',
      { class: `job-row status-${job.status}`, role: 'listitem', 'data-job-id': String(job.id), 'data-status': job.status },
      h(
        'div',
        { class: 'job-title' },
        h('span', { class: 'swatch', style: { background: jobColor(job.id) } }),
        h('div', {}, h('div', { class: 'job-name' }, job.name), h('div', { class: 'muted small' }, `#${job.id} · ${job.kind || 'job'} · `, h('span', { class: 'job-ago' }, fmtAgo(job.createdAt)))),
      ),
      h('div', { class: 'job-status' }, h('span', { class: `badge badge-${job.status}` }, statusText)),
      h(
        'div',
        { class: 'job-progress' },
        h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(pct) }, h('div', { class: 'bar-fill', style: { width: `${pct}%` } })),
        h('span', { class: 'small muted' }, job.total ? `${job.step} / ${job.total}` : job.step ? `step ${job.step}` : ''),
      ),
      h('div', { class: 'job-eta small' }, job.status === 'running' ? h('span', { class: 'label-phone' }, 'ETA ') : null, h('span', { class: 'job-eta-text' }, this.etaText(job, eta))),
      h(
        'div',
        { class: 'job-loss small' },
        h('span', { class: 'label-phone' }, 'loss '),
        h('span', { class: 'mono' }, fmtNum(train, 4)),
        ' / ',
        h('span', { class: 'mono' }, fmtNum(valLoss, 4)),
      ),
      h(
        'div',
        { class: 'job-actions' },
        h('a', { class: 'btn btn-sm btn-ghost', href: `#curves/${encodeURIComponent(job.id)}`, onclick: () => store.setCharted(job.id, true) }, 'Curves'),
        h('a', { class: 'btn btn-sm btn-ghost', href: `#samples/${encodeURIComponent(job.id)}` }, 'Samples'),
        actions,
      ),
      lora ? this.renderLora(job, lora) : null,
      job.error ? h('div', { class: 'job-error' }, job.error) : null,
    );
  }

  /** A LoRA job: its rank, alpha and targets, and its adapter checkpoints with "Serve adapter". */
  renderLora(job, lora) {
    const parts = [`r ${lora.rank ?? '?'}`, `α ${lora.alpha ?? 'default'}`, lora.targets ? lora.targets.join(',') : 'default targets'];
    const all = api.adapterCheckpoints(job);
    const shown = all.slice(0, MAX_ADAPTER_ROWS);
    return h(
      'div',
      { class: 'job-lora', 'data-lora-rank': lora.rank ?? '' },
      h('div', { class: 'small' }, h('span', { class: 'badge badge-lora' }, 'LoRA'), ' ', h('span', { class: 'mono lora-config' }, parts.join(' · ')), lora.base ? h('span', { class: 'muted' }, ` on ${lora.base}`) : null),
      shown.map((c) => this.renderAdapterCheckpoint(job, c)),
      all.length > shown.length ? h('div', { class: 'muted small' }, `+${all.length - shown.length} older adapter checkpoints`) : null,
      job.checkpoints && !all.length ? h('div', { class: 'muted small' }, 'no adapter checkpoint yet') : null,
    );
  }

  renderAdapterCheckpoint(job, c) {
    const servedAs = store.adapters.find((a) => samePath(a.path, c.path));
    const name = h('input', {
      type: 'text',
      class: 'adapter-name mono',
      value: this.adapterNames.get(c.path) ?? api.defaultAdapterName(job.id, c.step),
      'aria-label': `Adapter name for step ${c.step}`,
      spellcheck: 'false',
      maxlength: 64,
      oninput: () => this.adapterNames.set(c.path, name.value),
    });
    const error = h('span', { class: 'adapter-error small', hidden: true });
    const serve = h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-action': 'serve-adapter', onclick: () => this.serveAdapter(c, name.value.trim(), serve, error) }, 'Serve adapter');
    return h(
      'div',
      { class: 'adapter-ckpt', 'data-step': String(c.step), 'data-path': c.path },
      h('span', { class: 'small' }, `step ${c.step}`),
      c.adapter.error ? h('span', { class: 'adapter-error small' }, c.adapter.error) : null,
      servedAs
        ? h('span', { class: 'small served' }, 'served as ', h('a', { class: 'mono', href: '#playground' }, servedAs.name), servedAs.state !== 'ready' ? ` (${servedAs.state})` : '')
        : [name, serve],
      error,
    );
  }

  async serveAdapter(c, name, button, errorEl) {
    errorEl.hidden = true;
    if (!name) {
      errorEl.textContent = 'Name the adapter first.';
      errorEl.hidden = false;
      return;
    }
    button.disabled = true;
    try {
      const a = await api.loadAdapter({ name, path: c.path });
      toast(`Adapter “${a.name || name}” loaded — pick it in the Playground`, 'ok');
      this.adapterNames.delete(c.path);
      store.refreshAdaptersAndModels();
    } catch (e) {
      // The row may have been rebuilt meanwhile: say it on the current one too.
      const msg = e.status ? `${e.status}: ${e.message}` : e.message;
      for (const el of [errorEl, this.list.querySelector(`.adapter-ckpt[data-path="${CSS.escape(c.path)}"] .adapter-error:last-child`)]) {
        if (!el) continue;
        el.textContent = msg;
        el.hidden = false;
      }
      toast(`Could not serve the adapter: ${msg}`, 'error');
    } finally {
      button.disabled = false;
    }
  }
}

const MAX_ADAPTER_ROWS = 4; // newest adapter checkpoints shown per job

function samePath(a, b) {
  const norm = (p) => String(p || '').replace(/\/+$/, '');
  return norm(a) !== '' && norm(a) === norm(b);
}
