// Serving panel: the loaded model, KV-cache use, requests running / waiting, prefix-cache hit
// rate and tokens generated (GET /v1/serving, the JSON twin of /metrics); load a model by path.
// The LoRA adapters served beside the model, with their requests in flight and served
// (GET /v1/adapters, the twin of /metrics' ktl_adapter_requests_*), are the Adapters card.
import * as api from './api.js';
import { store } from './store.js';
import { h, fmtNum, toast } from './util.js';
import { AdaptersCard } from './adapters_card.js';

/** After a load request: the server loads in the background, so look again a few times. */
export function refreshSoon() {
  for (const ms of [300, 1500, 4000, 8000]) {
    setTimeout(() => {
      store.refreshModels().catch(() => {});
      store.refreshServing().catch(() => {});
    }, ms);
  }
}

export class ServingView {
  constructor(root) {
    this.root = root;
    this.build();
    store.on('serving', () => this.render());
    store.on('models', () => this.render());
  }

  build() {
    const big = (id, label) => h('div', { class: 'card tile' }, h('span', { class: 'muted small' }, label), h('span', { class: 'big mono', id }, '–'));
    this.kvFill = h('div', { class: 'bar-fill' });
    this.kvText = h('span', { class: 'small muted', id: 'kv-text' }, '–');
    this.pathInput = h('input', { id: 'load-path', type: 'text', placeholder: 'model directory, e.g. jobs/3/checkpoints/checkpoint-240 (under the data dir)', spellcheck: 'false' });
    this.root.append(
      h(
        'div',
        { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Serving'), h('span', { class: 'muted small' }, 'refreshes every 2 s')),
        h('div', { class: 'serving-model' }, h('span', { class: 'muted small' }, 'Loaded model'), h('div', { class: 'model-name', id: 'serving-model' }, '–')),
        h(
          'div',
          { class: 'kv' },
          h('div', { class: 'field-row' }, h('span', {}, 'KV cache'), this.kvText),
          h('div', { class: 'bar bar-lg', id: 'kv-bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 }, this.kvFill),
        ),
      ),
      h(
        'div',
        { class: 'tiles' },
        big('serving-running', 'Requests running'),
        big('serving-waiting', 'Requests waiting'),
        big('serving-prefix', 'Prefix-cache hit rate'),
        big('serving-tokens', 'Tokens generated'),
        big('serving-requests', 'Requests served'),
        big('serving-ttft50', 'TTFT p50'),
        big('serving-ttft99', 'TTFT p99'),
        big('serving-context', 'Context length'),
        big('serving-adapter-count', 'Adapters loaded'),
        big('serving-spec-acceptance', 'Draft tokens accepted'),
        big('serving-spec-length', 'Mean accepted length'),
      ),
      new AdaptersCard('serving').el,
      h(
        'form',
        { class: 'card load-form', onsubmit: (ev) => this.load(ev) },
        h('h3', {}, 'Load a model'),
        h('p', { class: 'muted small' }, 'Switch the served model without a restart: a model directory under the server’s data dir, or use “Load model” on a finished job.'),
        h('div', { class: 'row' }, this.pathInput, h('button', { type: 'submit', class: 'btn btn-primary', id: 'load-button' }, 'Load')),
      ),
    );
  }

  async load(ev) {
    ev.preventDefault();
    const path = this.pathInput.value.trim();
    if (!path) return;
    try {
      await api.loadModel({ path });
      toast(`Loading ${path}…`, 'ok');
      refreshSoon();
    } catch (e) {
      toast(`Load failed: ${e.message}`, 'error');
    }
  }

  render() {
    const s = store.serving;
    const set = (id, v) => (this.root.querySelector(`#${id}`).textContent = v);
    const model = (s && s.model) || store.models[0] || '';
    const loading = s && (s.modelState === 'loading' || s.modelState === 'failed') ? ` (${s.modelState})` : '';
    set('serving-model', (model || 'no model loaded') + loading);
    this.root.querySelector('#serving-model').classList.toggle('muted', !model);
    if (!s) return;
    set('serving-running', String(s.running));
    set('serving-waiting', String(s.waiting));
    set('serving-prefix', s.prefixHitRate === null ? '–' : `${fmtNum(100 * s.prefixHitRate, 3)}%`);
    set('serving-tokens', s.tokensGenerated === null ? '–' : fmtNum(s.tokensGenerated));
    set('serving-requests', s.requestsTotal === null ? '–' : fmtNum(s.requestsTotal));
    const ms = (v) => (v === null || !v ? '–' : `${fmtNum(v * 1000, 3)} ms`);
    set('serving-ttft50', ms(s.ttftP50));
    set('serving-ttft99', ms(s.ttftP99));
    set('serving-context', s.maxContext ? `${s.maxContext} tok` : '–');
    set('serving-adapter-count', s.adaptersLoaded === null ? String(store.adapters.length) : String(s.adaptersLoaded));
    // Speculative decoding: '–' until a draft token was proposed (off, or nothing served yet).
    const spec = s.specProposed !== null && s.specProposed > 0;
    set('serving-spec-acceptance', spec ? `${fmtNum(100 * s.specAcceptance, 3)}% of ${fmtNum(s.specProposed)}` : '–');
    set('serving-spec-length', spec ? fmtNum(s.specMeanAccepted, 3) : '–');
    const pct = s.kvTotal ? (100 * s.kvUsed) / s.kvTotal : 0;
    this.kvFill.style.width = `${pct}%`;
    this.kvFill.classList.toggle('warn', pct > 85);
    this.root.querySelector('#kv-bar').setAttribute('aria-valuenow', String(Math.round(pct)));
    this.kvText.textContent = s.kvTotal ? `${s.kvUsed} / ${s.kvTotal} blocks · ${fmtNum(pct, 3)}%` : 'no cache allocated';
  }
}
