// Shared page state: the job list, the served model and serving counters, polled from the server.
// Views subscribe with store.on('jobs' | 'serving' | 'models' | 'adapters' | 'connection', fn).
import * as api from './api.js';

class Store {
  constructor() {
    this.jobs = []; // newest first
    this.jobById = new Map();
    this.models = []; // ids from /v1/models (the base first, then its adapters)
    this.modelChoices = []; // [{id, parent, label}]: the same, for the playground's selector
    this.adapters = []; // loaded LoRA adapters (GET /v1/adapters)
    this.serving = null;
    this.connected = true;
    this.listeners = new Map();
    this.progressHistory = new Map(); // job id -> [{t, step}] observed here, for the ETA
    this.chartJobs = new Set(loadList('ktl.chartJobs')); // job ids shown on the curves view
    this.details = new Map(); // job id -> {metrics, checkpoints, status, at}: from GET /v1/jobs/{id}
    this.detailsInFlight = new Set();
  }

  setChartJobs(ids) {
    this.chartJobs = new Set([...ids].map(String));
    saveList('ktl.chartJobs', [...this.chartJobs]);
    this.emit('chartJobs', this.chartJobs);
  }

  /** Adds or removes a job from the curves view; remembered across reloads. */
  setCharted(id, on) {
    id = String(id);
    if (on) this.chartJobs.add(id);
    else this.chartJobs.delete(id);
    saveList('ktl.chartJobs', [...this.chartJobs]);
    this.emit('chartJobs', this.chartJobs);
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, payload) {
    for (const fn of this.listeners.get(event) || []) {
      try {
        fn(payload);
      } catch (e) {
        console.warn(`listener for ${event} failed`, e);
      }
    }
  }

  setConnected(ok) {
    if (ok !== this.connected) {
      this.connected = ok;
      this.emit('connection', ok);
    }
  }

  async refreshJobs() {
    const jobs = await api.listJobs();
    jobs.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0) || String(b.id).localeCompare(String(a.id), undefined, { numeric: true }));
    for (const j of jobs) this.mergeDetails(j);
    this.jobs = jobs;
    this.jobById = new Map(jobs.map((j) => [String(j.id), j]));
    for (const j of jobs) this.noteProgress(j);
    this.emit('jobs', jobs);
    this.fetchDetails(jobs);
    return jobs;
  }

  /** Latest metrics and checkpoints come from GET /v1/jobs/{id} when the list lacks them. */
  mergeDetails(job) {
    const d = this.details.get(String(job.id));
    if (!d) return;
    if (!job.metrics) job.metrics = { ...d.metrics };
    if (!job.checkpoints) job.checkpoints = d.checkpoints;
  }

  fetchDetails(jobs) {
    const now = Date.now();
    const stale = jobs.filter((j) => {
      const d = this.details.get(String(j.id));
      if (this.detailsInFlight.has(String(j.id))) return false;
      if (!d || d.status !== j.status) return true;
      return j.status === 'running' && now - d.at > 4000;
    });
    for (const j of stale.slice(0, 8)) {
      const id = String(j.id);
      this.detailsInFlight.add(id);
      api
        .getJob(id)
        .then((full) => {
          this.details.set(id, { metrics: full.metrics || {}, checkpoints: full.checkpoints || [], status: full.status, at: Date.now() });
          const cur = this.jobById.get(id);
          if (cur) {
            cur.metrics = { ...(cur.metrics || {}), ...(full.metrics || {}) };
            cur.checkpoints = full.checkpoints || cur.checkpoints;
            this.emit('jobs', this.jobs);
          }
        })
        .catch(() => {})
        .finally(() => this.detailsInFlight.delete(id));
    }
  }

  /** A metric seen live on an events stream updates the job's "latest" too. */
  noteMetric(id, key, value) {
    const job = this.job(id);
    if (job) job.metrics = { ...(job.metrics || {}), [key]: value };
    const d = this.details.get(String(id));
    if (d) d.metrics[key] = value;
  }

  /** Merges a live update (from an events stream) into a job and tells the views. */
  patchJob(id, patch) {
    const job = this.jobById.get(String(id));
    if (!job) return;
    Object.assign(job, patch);
    this.noteProgress(job);
    // A reconnecting events stream replays a job's history at once: tell the views once.
    if (!this.patchTimer) {
      this.patchTimer = setTimeout(() => {
        this.patchTimer = null;
        this.emit('jobs', this.jobs);
      }, 100);
    }
  }

  upsertJob(job) {
    const key = String(job.id);
    if (this.jobById.has(key)) Object.assign(this.jobById.get(key), job);
    else {
      this.jobs.unshift(job);
      this.jobById.set(key, job);
    }
    this.emit('jobs', this.jobs);
  }

  job(id) {
    return this.jobById.get(String(id));
  }

  noteProgress(job) {
    if (job.status !== 'running' || !job.total) return;
    let hist = this.progressHistory.get(String(job.id));
    // A resumed job restarts from its checkpoint: its old rate samples no longer apply.
    if (!hist || hist.startedAt !== job.startedAt) {
      hist = [];
      hist.startedAt = job.startedAt;
      this.progressHistory.set(String(job.id), hist);
    }
    const last = hist[hist.length - 1];
    if (last && job.step <= last.step) return; // replayed (older) progress says nothing new
    hist.push({ t: Date.now(), step: job.step });
    while (hist.length > 30) hist.shift();
  }

  /** Seconds left for a running job: the recent step rate seen here, else since started_at. */
  etaSeconds(job) {
    if (job.status !== 'running' || !job.total || job.step >= job.total) return null;
    const left = job.total - job.step;
    const hist = this.progressHistory.get(String(job.id)) || [];
    if (hist.length >= 2) {
      const a = hist[0];
      const b = hist[hist.length - 1];
      const dt = (b.t - a.t) / 1000;
      if (dt >= 3 && b.step > a.step) return left / ((b.step - a.step) / dt);
    }
    if (job.startedAt && job.step > 0) {
      const dt = (Date.now() - job.startedAt) / 1000;
      if (dt > 0) return left / (job.step / dt);
    }
    return null;
  }

  async refreshModels() {
    this.modelChoices = await api.listModels();
    this.models = this.modelChoices.map((m) => m.id);
    this.emit('models', this.models);
    return this.models;
  }

  async refreshAdapters() {
    this.adapters = await api.listAdapters();
    this.emit('adapters', this.adapters);
    return this.adapters;
  }

  /** After an adapter was loaded or unloaded: the selector and the adapter lists. */
  refreshAdaptersAndModels() {
    this.refreshAdapters().catch(() => {});
    this.refreshModels().catch(() => {});
  }

  async refreshServing() {
    const prev = this.serving;
    this.serving = await api.serving();
    this.emit('serving', this.serving);
    // The served model changed (a load finished): the model list is stale now.
    if (prev && (prev.model !== this.serving.model || prev.modelState !== this.serving.modelState || prev.adaptersLoaded !== this.serving.adaptersLoaded)) {
      this.refreshModels().catch(() => {});
    }
    return this.serving;
  }
}

function loadList(key) {
  try {
    const v = JSON.parse(localStorage.getItem(key) || '[]');
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}
function saveList(key, list) {
  try {
    localStorage.setItem(key, JSON.stringify(list));
  } catch {
    /* storage disabled: selection lasts until reload */
  }
}

export const store = new Store();
