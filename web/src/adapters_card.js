// The "Adapters" card (playground and serving views): the LoRA adapters the server has loaded
// (GET /v1/adapters: name, rank, targets, state, requests in flight and served), Unload
// (DELETE /v1/adapters/{name}), and a small form that loads one by path (POST /v1/adapters).
import * as api from './api.js';
import { store } from './store.js';
import { h, clear, fmtNum, toast } from './util.js';

export class AdaptersCard {
  /** prefix: the element ids' prefix ('pg' or 'serving'), so both views' cards can coexist. */
  constructor(prefix) {
    this.prefix = prefix;
    this.body = h('tbody', {});
    this.count = h('span', { class: 'muted small', id: `${prefix}-adapters-count` });
    this.sig = null;
    this.empty = h('div', { class: 'muted small', id: `${prefix}-adapters-empty` });
    this.name = h('input', { id: `${prefix}-adapter-name`, type: 'text', placeholder: 'name, e.g. chat-r16', spellcheck: 'false', maxlength: 64, 'aria-label': 'Adapter name' });
    this.path = h('input', { id: `${prefix}-adapter-path`, type: 'text', placeholder: 'adapter directory, e.g. jobs/4/checkpoints/checkpoint-300', spellcheck: 'false', 'aria-label': 'Adapter directory' });
    this.error = h('div', { class: 'adapter-error small', id: `${prefix}-adapter-error`, hidden: true });
    this.loadButton = h('button', { type: 'submit', class: 'btn btn-ghost', id: `${prefix}-adapter-load` }, 'Load adapter');
    this.el = h(
      'div',
      { class: 'card adapters-card', id: `${prefix}-adapters` },
      h('div', { class: 'card-head' }, h('h2', {}, 'Adapters'), this.count),
      h(
        'table',
        { class: 'adapter-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Rank', 'Targets', 'State', 'In flight', 'Requests', ''].map((t) => h('th', {}, t)))),
        this.body,
      ),
      this.empty,
      h('form', { class: 'row adapter-load', onsubmit: (ev) => this.load(ev) }, this.name, this.path, this.loadButton),
      this.error,
    );
    store.on('adapters', () => this.render());
    store.on('models', () => this.render());
    this.render();
  }

  render() {
    const adapters = store.adapters;
    const hasModel = store.models.length > 0;
    // Rebuilt only when something changed: a rebuilt button would lose a click.
    const sig = JSON.stringify(adapters);
    if (sig !== this.sig) {
      this.sig = sig;
      clear(this.body).append(...adapters.map((a) => this.row(a)));
    }
    this.count.textContent = adapters.length ? `${adapters.length} loaded` : '';
    this.empty.hidden = adapters.length > 0;
    this.empty.textContent = hasModel
      ? 'No adapter loaded. Load a LoRA checkpoint by path below, or with “Serve adapter” on its job.'
      : 'Adapters are served beside a base model: load a model first.';
    this.loadButton.disabled = !hasModel;
  }

  row(a) {
    const unload = h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'data-action': 'unload-adapter', disabled: a.state !== 'ready', onclick: () => this.unload(a.name, unload) }, 'Unload');
    return h(
      'tr',
      { 'data-adapter': a.name, 'data-state': a.state },
      h('td', {}, h('span', { class: 'mono' }, a.name), a.path ? h('div', { class: 'muted small' }, a.path) : null),
      h('td', { class: 'mono' }, a.rank ?? '–', a.alpha !== null ? h('span', { class: 'muted' }, ` α ${fmtNum(a.alpha)}`) : null),
      h('td', { class: 'mono small' }, a.targets.join(',') || '–'),
      h('td', {}, h('span', { class: `badge ${a.state === 'ready' ? 'badge-succeeded' : 'badge-interrupted'}` }, a.state)),
      h('td', { class: 'mono adapter-in-flight' }, String(a.inFlight)),
      h('td', { class: 'mono adapter-requests' }, fmtNum(a.requestsTotal)),
      h('td', {}, unload),
    );
  }

  async load(ev) {
    ev.preventDefault();
    const name = this.name.value.trim();
    const path = this.path.value.trim();
    this.error.hidden = true;
    if (!name || !path) {
      this.showError('Give the adapter a name and its directory.');
      return;
    }
    this.loadButton.disabled = true;
    try {
      const a = await api.loadAdapter({ name, path });
      toast(`Adapter “${a.name || name}” loaded (r ${a.rank ?? '?'})`, 'ok');
      this.name.value = '';
      this.path.value = '';
      store.refreshAdaptersAndModels();
    } catch (e) {
      this.showError(e.status ? `${e.status}: ${e.message}` : e.message);
    } finally {
      this.loadButton.disabled = store.models.length === 0;
    }
  }

  async unload(name, button) {
    button.disabled = true;
    try {
      const r = await api.unloadAdapter(name);
      toast(r.state === 'draining' ? `“${name}” unloads when its ${r.in_flight ?? ''} request(s) in flight end` : `Adapter “${name}” unloaded`, 'ok');
    } catch (e) {
      toast(`Could not unload “${name}”: ${e.status ? `${e.status}: ` : ''}${e.message}`, 'error');
      button.disabled = false;
    }
    store.refreshAdaptersAndModels();
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }
}
