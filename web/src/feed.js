// Live per-job data: metric series loaded once, then kept current from the job's events stream
// (falling back to polling with since_step when the stream is unavailable). Views call
// feed.watch(id) / feed.unwatch(id) and listen with feed.on(fn(jobId, what)).
import * as api from './api.js';
import { store } from './store.js';

const POLL_MS = 3000;
const RECONNECT_MS = 2000;
// Browsers allow 6 HTTP/1.1 connections per host and each open stream holds one (and a server
// worker): beyond this many live jobs, the rest are polled.
const MAX_STREAMS = 2;

class JobFeed {
  constructor() {
    this.jobs = new Map(); // id -> entry
    this.listeners = new Set();
    store.on('jobs', () => this.syncWithJobs());
  }

  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(id, what) {
    for (const fn of this.listeners) fn(String(id), what);
  }

  entry(id) {
    id = String(id);
    let e = this.jobs.get(id);
    if (!e) {
      e = { id, refs: 0, series: new Map(), loaded: false, loading: null, live: null, pollTimer: null, streamBroken: false, lastEventId: undefined };
      this.jobs.set(id, e);
    }
    return e;
  }

  watch(id) {
    const e = this.entry(id);
    e.refs++;
    if (!e.loading) e.loading = this.loadAll(e, e.loaded); // re-watch: catch up on what was missed
    this.ensureLive(e);
  }

  unwatch(id) {
    const e = this.jobs.get(String(id));
    if (!e) return;
    e.refs = Math.max(0, e.refs - 1);
    if (e.refs === 0) this.stopLive(e);
  }

  /** {steps: number[], values: number[]} sorted by step. */
  series(id, key) {
    const e = this.jobs.get(String(id));
    const m = e && e.series.get(key);
    if (!m) return { steps: [], values: [] };
    const steps = [...m.keys()].sort((a, b) => a - b);
    return { steps, values: steps.map((s) => m.get(s)) };
  }

  /** Metric keys loaded for a job. */
  keys(id) {
    const e = this.jobs.get(String(id));
    return e ? [...e.series.keys()] : [];
  }

  latest(id, key) {
    const { steps, values } = this.series(id, key);
    return steps.length ? { step: steps[steps.length - 1], value: values[values.length - 1] } : null;
  }

  put(e, key, step, value) {
    if (!Number.isFinite(step) || !Number.isFinite(value)) return;
    if (!e.series.has(key)) e.series.set(key, new Map());
    e.series.get(key).set(step, value);
  }

  maxStep(e, key) {
    const m = e.series.get(key);
    if (!m || m.size === 0) return undefined;
    let best = -Infinity;
    for (const s of m.keys()) if (s > best) best = s;
    return best;
  }

  /** Where a catch-up fetch starts: the least advanced series' last step (undefined = all). */
  resumeStep(e) {
    let since;
    for (const key of e.series.keys()) {
      const m = this.maxStep(e, key);
      if (m !== undefined && (since === undefined || m < since)) since = m;
    }
    return since;
  }

  async loadAll(e, incremental = false) {
    try {
      const series = await api.jobMetrics(e.id, { sinceStep: incremental ? this.resumeStep(e) : undefined });
      for (const [key, points] of Object.entries(series)) for (const p of points) this.put(e, key, p.step, p.value);
      e.loaded = true;
      this.emit(e.id, 'metrics');
    } catch (err) {
      if (!incremental) console.warn(`metrics for job ${e.id}:`, err.message);
    } finally {
      e.loading = null;
    }
  }

  isActive(id) {
    const job = store.job(id);
    return !!job && api.ACTIVE_STATUSES.has(job.status);
  }

  streams() {
    let n = 0;
    for (const e of this.jobs.values()) if (e.live) n++;
    return n;
  }

  ensureLive(e) {
    if (e.refs === 0 || e.live || e.pollTimer || !this.isActive(e.id)) return;
    if (store.job(e.id)?.status !== 'running') return; // queued: nothing to follow yet
    if (e.streamBroken || this.streams() >= MAX_STREAMS) return this.startPolling(e);
    const ctrl = new AbortController();
    e.live = ctrl;
    api
      .followJobEvents(e.id, (ev) => this.onEvent(e, ev), ctrl.signal, e.lastEventId)
      .then(
        () => null,
        (err) => err,
      )
      .then(async (err) => {
        if (e.live !== ctrl) return;
        e.live = null;
        if (ctrl.signal.aborted) return;
        if (err && (err.status === 404 || err.status === 405 || err.status === 501)) e.streamBroken = true;
        await this.loadAll(e, true); // catch up on anything missed between reconnects
        if (e.refs > 0 && this.isActive(e.id)) setTimeout(() => this.ensureLive(e), RECONNECT_MS);
      });
  }

  startPolling(e) {
    const tick = async () => {
      e.pollTimer = null;
      if (e.refs === 0) return;
      await this.loadAll(e, true);
      if (e.refs > 0 && this.isActive(e.id)) e.pollTimer = setTimeout(tick, POLL_MS);
    };
    e.pollTimer = setTimeout(tick, POLL_MS);
  }

  stopLive(e) {
    if (e.live) {
      const ctrl = e.live;
      e.live = null;
      ctrl.abort();
    }
    if (e.pollTimer) {
      clearTimeout(e.pollTimer);
      e.pollTimer = null;
    }
  }

  onEvent(e, { type, data, id }) {
    if (id !== undefined && id !== '') e.lastEventId = id; // a reconnect resumes after it
    if (type === 'metric') {
      this.put(e, data.key, data.step, data.value);
      this.emit(e.id, 'metrics');
      store.noteMetric(e.id, data.key, data.value);
    } else if (type === 'progress') {
      const job = store.job(e.id);
      if (job && data.step >= job.step) store.patchJob(e.id, { step: data.step, total: data.total || job.total || 0 });
    } else if (type === 'status' || type === 'end') {
      // Replayed history holds old transitions too: the job list (re-read here) has the truth.
      this.refreshJobsSoon();
    } else if (type === 'sample' || type === 'checkpoint') {
      this.emit(e.id, type);
    }
  }

  refreshJobsSoon() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      store.refreshJobs().catch(() => {});
    }, 150);
  }

  /** Start streams for watched jobs that became active; finish those that ended. */
  syncWithJobs() {
    for (const e of this.jobs.values()) {
      if (e.refs === 0) continue;
      if (this.isActive(e.id)) this.ensureLive(e);
      else if (e.live || e.pollTimer) {
        this.stopLive(e);
        this.loadAll(e, true);
      }
    }
  }
}

export const feed = new JobFeed();
