// Entry point: view routing (#jobs, #curves, ...), polling of jobs/models/serving, API-key prompt.
import * as api from './api.js';
import { store } from './store.js';
import { fmtNum } from './util.js';
import { JobsView } from './jobs_view.js';
import { CurvesView } from './curves_view.js';
import { SamplesView } from './samples_view.js';
import { PlaygroundView } from './playground_view.js';
import { ServingView } from './serving_view.js';

const JOBS_POLL_MS = 2000;
const SERVING_POLL_MS = 2000;
const MODELS_POLL_MS = 5000;

const views = {
  jobs: new JobsView(document.getElementById('view-jobs')),
  curves: new CurvesView(document.getElementById('view-curves')),
  samples: new SamplesView(document.getElementById('view-samples')),
  playground: new PlaygroundView(document.getElementById('view-playground')),
  serving: new ServingView(document.getElementById('view-serving')),
};
let current = null;

function route() {
  const [name, arg] = (location.hash.replace(/^#/, '') || 'jobs').split('/');
  const next = views[name] ? name : 'jobs';
  for (const [key, view] of Object.entries(views)) {
    view.root.hidden = key !== next;
  }
  for (const a of document.querySelectorAll('.tabs a')) {
    a.classList.toggle('active', a.dataset.view === next);
    if (a.dataset.view === next) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (current && current !== next) views[current].hide?.();
  current = next;
  views[next].show?.(arg ? decodeURIComponent(arg) : undefined);
}

// ------------------------------------------------------------ API key prompt

const dialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');

function promptForKey(reason) {
  return new Promise((resolve, reject) => {
    document.getElementById('key-reason').hidden = !reason;
    keyInput.value = api.apiKey();
    dialog.returnValue = '';
    const done = () => {
      dialog.removeEventListener('close', done);
      const action = dialog.returnValue;
      if (action === 'save' && keyInput.value.trim()) {
        api.setApiKey(keyInput.value.trim());
        resolve();
      } else if (action === 'clear') {
        api.setApiKey('');
        reject(new Error('no key'));
      } else reject(new Error('cancelled'));
      refreshAll();
    };
    dialog.addEventListener('close', done);
    if (!dialog.open) dialog.showModal();
    keyInput.focus();
  });
}
api.onUnauthorized(() => promptForKey(true));
document.getElementById('key-button').addEventListener('click', () => promptForKey(false).catch(() => {}));

// ------------------------------------------------------------ header chip

function renderChip() {
  const chip = document.getElementById('serving-chip');
  const s = store.serving;
  const model = (s && s.model) || store.models[0] || '';
  chip.classList.toggle('on', !!model);
  chip.replaceChildren();
  const dot = document.createElement('span');
  dot.className = 'dot';
  const label = document.createElement('span');
  label.className = 'chip-label';
  const loading = s && s.modelState === 'loading';
  label.textContent = loading ? `${model || 'model'} · loading…` : model || 'no model';
  chip.append(dot, label);
  if (s && s.kvTotal) {
    const kv = document.createElement('span');
    kv.className = 'chip-extra';
    kv.textContent = `KV ${fmtNum((100 * s.kvUsed) / s.kvTotal, 2)}% · ${s.running} run · ${s.waiting} wait`;
    chip.append(kv);
  }
}
store.on('serving', renderChip);
store.on('models', renderChip);

const offline = document.getElementById('offline');
store.on('connection', (ok) => (offline.hidden = ok));

// ------------------------------------------------------------ polling

function poller(fn, ms) {
  let timer = null;
  let busy = false;
  const tick = async () => {
    clearTimeout(timer);
    timer = null;
    if (busy) return; // the running tick schedules the next one
    busy = true;
    try {
      if (!document.hidden) {
        await fn();
        store.setConnected(true);
      }
    } catch (e) {
      if (e instanceof TypeError) store.setConnected(false); // network failure
    } finally {
      busy = false;
    }
    timer = setTimeout(tick, ms);
  };
  return { start: tick, now: tick };
}

const pollers = [
  poller(() => store.refreshJobs(), JOBS_POLL_MS),
  poller(() => store.refreshServing(), SERVING_POLL_MS),
  poller(() => store.refreshAdapters(), SERVING_POLL_MS),
  poller(() => store.refreshModels(), MODELS_POLL_MS),
];
function refreshAll() {
  for (const p of pollers) p.now();
}
document.addEventListener('visibilitychange', () => !document.hidden && refreshAll());

window.addEventListener('hashchange', route);
route();
for (const p of pollers) p.start();
