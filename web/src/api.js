// Every server path and field name the dashboard relies on lives in this file, so adapting the
// page to a server change is a one-file edit. Other modules see normalised objects only.
import { readSse } from './sse.js';

export const PATHS = {
  health: '/health',
  models: '/v1/models',
  loadModel: '/v1/models/load',
  completions: '/v1/completions',
  chatCompletions: '/v1/chat/completions',
  serving: '/v1/serving',
  adapters: '/v1/adapters',
  adapter: (name) => `/v1/adapters/${encodeURIComponent(name)}`,
  jobs: '/v1/jobs',
  job: (id) => `/v1/jobs/${encodeURIComponent(id)}`,
  jobMetrics: (id) => `/v1/jobs/${encodeURIComponent(id)}/metrics`,
  jobSamples: (id) => `/v1/jobs/${encodeURIComponent(id)}/samples`,
  jobEvents: (id) => `/v1/jobs/${encodeURIComponent(id)}/events`,
  jobCancel: (id) => `/v1/jobs/${encodeURIComponent(id)}/cancel`,
  jobResume: (id) => `/v1/jobs/${encodeURIComponent(id)}/resume`,
  jobSweep: (id) => `/v1/jobs/${encodeURIComponent(id)}/sweep`,
  jobRecipe: (id) => `/v1/jobs/${encodeURIComponent(id)}/recipe`,
};

/** A sweep trial's metric key: trialMetric(3, 'val/loss') -> 'trial/3/val/loss'. */
export const trialMetric = (trial, key) => `trial/${trial}/${key}`;

// Metric keys written by the trainer.
export const METRIC = {
  trainLoss: 'train/loss',
  valLoss: 'val/loss',
  valPpl: 'val/ppl',
  valBpc: 'val/bpc',
  lr: 'train/lr',
  tokensPerS: 'train/tokens_per_s',
  gradNorm: 'train/grad_norm',
  // SFT jobs: held-out answers scored against the references (chrF n=6 beta=2, ROUGE-L F1).
  valChrf: 'val/chrf',
  valRougeL: 'val/rouge_l',
};

// Task accuracy by likelihood (training config task_eval): task/<name>/acc and .../acc_norm.
export const TASK_PREFIX = 'task/';
/** The task names among metric keys that have an accuracy series, sorted. */
export function taskNames(keys) {
  const names = new Set();
  for (const k of keys) {
    if (k.startsWith(TASK_PREFIX) && k.endsWith('/acc')) names.add(k.slice(TASK_PREFIX.length, -'/acc'.length));
  }
  return [...names].sort();
}
export const taskMetric = (name, what = 'acc') => `${TASK_PREFIX}${name}/${what}`;
export const ALL_METRICS = Object.values(METRIC);

// Job lifecycle: queued -> running -> succeeded | failed | cancelled, plus interrupted (crash).
export const ACTIVE_STATUSES = new Set(['queued', 'running']);
export const RESUMABLE_STATUSES = new Set(['interrupted', 'cancelled', 'failed']);
export const LOADABLE_STATUSES = new Set(['succeeded', 'cancelled', 'interrupted']);

// Config files the submit form refers to. Job paths resolve against the server's --data-dir
// (and --allow-path roots), so the server keeps copies of configs/ under DATA_DIR/configs.
export const TRAINING_CONFIG = 'configs/training.yaml';
export const MODEL_CONFIGS = {
  tiny: 'configs/model_tiny.yaml',
  small: 'configs/model_small.yaml',
};
// The vocab_size of each model config: the tokenizer prepare-data trains gets this many pieces.
export const MODEL_VOCAB = { tiny: 8000, small: 32000 };

/**
 * Turns the submit form's values into a job spec for POST /v1/jobs: a pipeline that prepares the
 * corpus (tokenizer included) and trains on it.
 * form: {name, corpus: 'default'|'path', dataPath, model: 'tiny'|'small', vocabSize, valFraction,
 *        maxSteps, batchSize, learningRate, seqLength, warmupSteps, logSteps, evalSteps,
 *        sampleSteps, saveSteps} (null = server default).
 */
export function buildTrainJobSpec(form) {
  const train = {
    config: TRAINING_CONFIG,
    model_config: MODEL_CONFIGS[form.model] || form.model,
    max_steps: form.maxSteps,
    batch_size: form.batchSize,
    learning_rate: form.learningRate,
    max_seq_length: form.seqLength,
    // training.yaml warms up for 100 steps: keep short runs from ending inside the warm-up.
    warmup_steps: form.warmupSteps ?? (form.maxSteps ? Math.max(1, Math.min(100, Math.round(form.maxSteps / 10))) : null),
    eval_steps: form.evalSteps,
    sample_steps: form.sampleSteps,
    save_steps: form.saveSteps,
    log_steps: form.logSteps,
  };
  for (const k of Object.keys(train)) if (train[k] === null || train[k] === undefined || train[k] === '') delete train[k];
  const prepare = form.corpus === 'path' ? { input: form.dataPath } : { default_corpus: true };
  const vocab = form.vocabSize ?? MODEL_VOCAB[form.model];
  if (vocab) prepare.vocab_size = vocab;
  if (form.valFraction !== null && form.valFraction !== undefined) prepare.val_fraction = form.valFraction;
  return { kind: 'pipeline', name: form.name, options: { prepare_data: prepare, train } };
}

/**
 * The SFT form's values as a job spec for POST /v1/jobs (`ktl sft`).
 * form: {name, initFrom, data, maxSteps, batchSize, learningRate, seqLength, noPack,
 *        valFraction, evalSteps, sampleSteps} (null = the SFT defaults).
 */
export function buildSftJobSpec(form) {
  const options = {
    init_from: form.initFrom,
    data: form.data,
    max_steps: form.maxSteps,
    batch_size: form.batchSize,
    learning_rate: form.learningRate,
    max_seq_length: form.seqLength,
    val_fraction: form.valFraction,
    eval_steps: form.evalSteps,
    sample_steps: form.sampleSteps,
  };
  if (form.noPack) options.no_pack = true;
  for (const k of Object.keys(options)) if (options[k] === null || options[k] === undefined || options[k] === '') delete options[k];
  return { kind: 'sft', name: form.name, options };
}

// ---------------------------------------------------------------- LoRA adapters

// Job kinds that train with the lora_* keys (docs/jobs-api.md); a pipeline's train stage too.
const LORA_KINDS = new Set(['train', 'sft', 'dpo', 'pipeline']);

/** An adapter as the server describes it (a checkpoint's "adapter", GET /v1/adapters). */
function normalizeAdapterInfo(a) {
  if (!a || typeof a !== 'object') return null;
  const targets = Array.isArray(a.targets) ? a.targets.map(String) : typeof a.targets === 'string' ? a.targets.split(',').map((t) => t.trim()).filter(Boolean) : null;
  return {
    rank: a.rank === undefined || a.rank === null ? null : Number(a.rank),
    alpha: a.alpha === undefined || a.alpha === null ? null : Number(a.alpha),
    targets,
    base: a.base || '',
    error: a.error || '',
  };
}

/**
 * Whether a job trains a LoRA adapter, and with what: {rank, alpha, targets, base} or null.
 * A checkpoint's adapter_config.json (the server reads it) is the truth once one exists; before
 * that the spec's lora_* options say it (alpha/targets null = the trainer's defaults).
 */
export function jobLora(job) {
  if (!job || (job.kind && !LORA_KINDS.has(job.kind))) return null;
  const fromCheckpoint = [...(job.checkpoints || [])].reverse().find((c) => c.adapter && !c.adapter.error);
  if (fromCheckpoint) {
    const a = fromCheckpoint.adapter;
    return { rank: a.rank, alpha: a.alpha, targets: a.targets, base: a.base };
  }
  const o = (job.options && (job.options.train || job.options)) || {};
  const rank = Number(o.lora_rank || 0);
  const anyAdapter = (job.checkpoints || []).some((c) => c.adapter);
  if (!(rank > 0) && !anyAdapter) return null;
  const alpha = o.lora_alpha === undefined || o.lora_alpha === null || o.lora_alpha === '' ? null : Number(o.lora_alpha);
  const targets = typeof o.lora_targets === 'string' && o.lora_targets ? o.lora_targets.split(',').map((t) => t.trim()).filter(Boolean) : null;
  return { rank: rank > 0 ? rank : null, alpha, targets, base: String(o.init_from || '') };
}

/** The job's adapter checkpoints (those whose directory holds adapter_config.json), newest first. */
export function adapterCheckpoints(job) {
  return (job.checkpoints || []).filter((c) => c.adapter).sort((a, b) => b.step - a.step);
}

/** The name a checkpoint's adapter is served under unless the user edits it: job3-step240. */
export function defaultAdapterName(jobId, step) {
  return `job${jobId}-step${step}`.replace(/[^A-Za-z0-9._:-]/g, '-');
}

/**
 * The playground's model choices from GET /v1/models: each base model followed by its adapters
 * ("parent" names the base, as vLLM lists them), [{id, parent, label}]. An adapter whose parent
 * is not listed still appears (after the bases).
 */
export function modelChoices(body) {
  const data = (body && Array.isArray(body.data) ? body.data : []).filter((m) => m && m.id);
  const bases = data.filter((m) => !m.parent);
  const adapters = data.filter((m) => m.parent);
  const out = [];
  const label = (m) => `${m.id} · adapter of ${m.parent}`;
  for (const b of bases) {
    out.push({ id: String(b.id), parent: '', label: String(b.id) });
    for (const a of adapters) if (a.parent === b.id) out.push({ id: String(a.id), parent: String(a.parent), label: label(a) });
  }
  const baseIds = new Set(bases.map((b) => b.id));
  for (const a of adapters) if (!baseIds.has(a.parent)) out.push({ id: String(a.id), parent: String(a.parent), label: label(a) });
  return out;
}

/** One row of GET /v1/adapters. */
export function normalizeAdapter(raw) {
  const info = normalizeAdapterInfo(raw) || {};
  return {
    name: String(raw.name || ''),
    path: raw.path || '',
    rank: info.rank,
    alpha: info.alpha,
    targets: info.targets || [],
    state: raw.state || 'ready', // ready | draining (unloads when its last request ends)
    inFlight: Number(raw.in_flight ?? 0),
    requestsTotal: Number(raw.requests_total ?? 0),
    loadMs: raw.load_ms === undefined || raw.load_ms === null ? null : Number(raw.load_ms),
    bytes: raw.bytes === undefined || raw.bytes === null ? null : Number(raw.bytes),
  };
}

// ---------------------------------------------------------------- auth

const KEY_STORAGE = 'ktl.apiKey';
let unauthorizedHandler = null;
let pendingAuth = null;

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}
export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lives for this request only */
  }
}
/** fn() is called on a 401 and returns a promise that resolves once a new key is stored
 *  (rejects if the user gives up). Concurrent 401s share one prompt. */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}
async function askForKey() {
  if (!unauthorizedHandler) return false;
  if (!pendingAuth) {
    pendingAuth = Promise.resolve(unauthorizedHandler())
      .then(() => true, () => false)
      .finally(() => setTimeout(() => (pendingAuth = null), 0));
  }
  return pendingAuth;
}

// ---------------------------------------------------------------- requests

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(json) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorFrom(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text);
      message = body?.error?.message || body?.message || (typeof body?.error === 'string' ? body.error : message);
    } catch {
      if (text) message = text.slice(0, 300);
    }
  } catch {
    /* body unreadable: keep the status line */
  }
  return new ApiError(res.status, message);
}

/** fetch with auth; on 401 asks for a key and retries until the user cancels. */
async function send(method, path, body, signal) {
  for (;;) {
    const res = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal,
    });
    if (res.status === 401 && (await askForKey())) continue;
    if (!res.ok) throw await errorFrom(res);
    return res;
  }
}

async function json(method, path, body, signal) {
  const res = await send(method, path, body, signal);
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ---------------------------------------------------------------- normalisers

function toMillis(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return t < 1e12 ? t * 1000 : t; // unix seconds or ms
  const n = Number(t);
  if (!Number.isNaN(n)) return toMillis(n);
  const d = Date.parse(t);
  return Number.isNaN(d) ? null : d;
}

/** A metric value from the wire: null (NaN/inf on the server) becomes NaN, never 0. */
function metricValue(v) {
  if (v !== null && typeof v === 'object') v = v.value;
  return v === null || v === undefined ? NaN : Number(v);
}

export function normalizeJob(raw) {
  const p = raw.progress || {};
  const metrics = {};
  for (const [k, v] of Object.entries(raw.latest_metrics || {})) metrics[k] = metricValue(v);
  return {
    id: raw.id,
    kind: raw.kind || '',
    name: raw.name || `job ${raw.id}`,
    status: raw.status || 'queued',
    cancelRequested: !!raw.cancel_requested,
    step: Number(p.step ?? raw.step ?? 0),
    total: Number(p.total ?? raw.total ?? 0),
    createdAt: toMillis(raw.created_at),
    startedAt: toMillis(raw.started_at),
    finishedAt: toMillis(raw.finished_at),
    // GET /v1/jobs may omit these (only GET /v1/jobs/{id} has them): null = unknown.
    metrics: raw.latest_metrics ? metrics : null,
    checkpoints: Array.isArray(raw.checkpoints)
      ? raw.checkpoints.map((c) => ({ step: Number(c.step), path: c.path || '', adapter: normalizeAdapterInfo(c.adapter) }))
      : null,
    options: (raw.spec && raw.spec.options) || null,
    error: raw.error || '',
  };
}

function normalizePoint(p) {
  return { step: Number(p.step), value: metricValue(p.value), time: toMillis(p.time) };
}

// ---------------------------------------------------------------- endpoints

export async function health() {
  const res = await fetch(PATHS.health);
  return { ok: res.ok, status: res.status };
}

/** The models the server can generate with, adapters after their base: [{id, parent, label}]. */
export async function listModels() {
  return modelChoices(await json('GET', PATHS.models));
}

/** Loaded LoRA adapters (GET /v1/adapters); [] from a server without the route. */
export async function listAdapters() {
  try {
    const body = await json('GET', PATHS.adapters);
    return (body.data || []).map(normalizeAdapter);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return [];
    throw e;
  }
}
/** Loads a PEFT adapter directory under `name`; throws ApiError (400 bad name/files, 404 no such
 *  directory, 409 name in use, 503 no model) with the server's message. */
export async function loadAdapter({ name, path }) {
  return normalizeAdapter(await json('POST', PATHS.adapters, { name, path }));
}
/** Unloads an adapter: {state: 'unloaded'} or {state: 'draining', in_flight} (202). */
export async function unloadAdapter(name) {
  return json('DELETE', PATHS.adapter(name));
}

/** Switches the served model; the server loads in the background unless wait is true. */
export async function loadModel({ jobId, path, wait = false }) {
  const body = jobId !== undefined ? { job_id: Number(jobId) } : { path };
  if (wait) body.wait = true;
  return json('POST', PATHS.loadModel, body);
}

export async function serving() {
  const s = await json('GET', PATHS.serving);
  const num = (v) => (v === null || v === undefined ? null : Number(v));
  return {
    model: s.model || '',
    modelState: s.model_state || '', // e.g. "loading" while a model loads
    maxContext: num(s.max_context),
    adaptersLoaded: num(s.adapters_loaded), // null from a server without adapters
    running: Number(s.running ?? 0),
    waiting: Number(s.waiting ?? 0),
    kvUsed: Number(s.kv_blocks_used ?? 0),
    kvTotal: Number(s.kv_blocks_total ?? 0),
    prefixHitRate: num(s.prefix_cache_hit_rate),
    tokensGenerated: num(s.tokens_generated),
    requestsTotal: num(s.requests_total),
    ttftP50: num(s.ttft_p50_s), // seconds
    ttftP99: num(s.ttft_p99_s),
    // Speculative decoding: null from a server that predates it.
    specProposed: num(s.spec_proposed),
    specAcceptance: num(s.spec_acceptance_rate),
    specMeanAccepted: num(s.spec_mean_accepted_length),
  };
}

export async function listJobs() {
  const body = await json('GET', PATHS.jobs);
  return (body.data || []).map(normalizeJob);
}
export async function getJob(id) {
  return normalizeJob(await json('GET', PATHS.job(id)));
}
export async function createJob(spec) {
  return normalizeJob(await json('POST', PATHS.jobs, spec));
}
export async function cancelJob(id) {
  return json('POST', PATHS.jobCancel(id));
}
export async function resumeJob(id) {
  return json('POST', PATHS.jobResume(id));
}

/**
 * Metric series of a job: {key: [{step, value, time}]}, all keys (or just `key`), steps after
 * sinceStep when given. Accepts {"series": {key: [...]}} and {"data": [{key, step, value}]}.
 */
export async function jobMetrics(id, { key, sinceStep } = {}) {
  const body = await json('GET', PATHS.jobMetrics(id) + query({ key, since_step: sinceStep }));
  const out = {};
  if (body.series && typeof body.series === 'object') {
    for (const [k, points] of Object.entries(body.series)) out[k] = (points || []).map(normalizePoint);
  } else {
    for (const p of body.data || []) {
      const k = p.key || key;
      (out[k] ||= []).push(normalizePoint(p));
    }
  }
  return out;
}

/**
 * A sweep job's trials, best first: {ranking: [{id, state, overrides, steps, valLoss, valBpc,
 * seconds, note}], rungs, finished, recipe (YAML text or null)}.
 */
export async function jobSweep(id) {
  const b = await json('GET', PATHS.jobSweep(id));
  const num = (v) => (v === null || v === undefined ? NaN : Number(v));
  return {
    ranking: (b.ranking || []).map((r) => ({
      id: Number(r.id),
      state: r.state || '',
      overrides: r.overrides || {},
      steps: Number(r.steps || 0),
      valLoss: num(r.val_loss),
      valBpc: num(r.val_bpc),
      seconds: Number(r.seconds || 0),
      note: r.note || '',
    })),
    rungs: b.rungs || [],
    finished: !!b.finished,
    recipe: b.recipe ?? null,
  };
}
/** Saves a finished sweep's best config as DATA_DIR/recipes/<name>.yaml; returns {path}. */
export async function saveRecipe(id, name) {
  return json('POST', PATHS.jobRecipe(id), { name });
}

/** [{step, prompt, text, kind}] */
export async function jobSamples(id) {
  const body = await json('GET', PATHS.jobSamples(id));
  return (body.data || []).map((s) => ({
    step: Number(s.step ?? 0),
    prompt: s.prompt || '',
    text: s.text || '',
    kind: s.kind || '',
  }));
}

/**
 * Follows a job's event stream until it ends or `signal` aborts. onEvent receives
 * {type, data, id}: type 'metric' {key, step, value}, 'progress' {step, total}, 'status'
 * {status, error}, 'sample' {step, prompt, text, kind}, 'checkpoint' {step, path}, 'end', or
 * others as sent. `since` = the last event id already seen (the server replays after it).
 */
export async function followJobEvents(id, onEvent, signal, since) {
  const res = await send('GET', PATHS.jobEvents(id) + query({ since }), undefined, signal);
  await readSse(res, ({ event, data, id: eventId }) => {
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    if (!parsed || typeof parsed !== 'object') return;
    const type = event !== 'message' ? event : parsed.type || parsed.event || 'message';
    const d = parsed.data && typeof parsed.data === 'object' ? parsed.data : parsed;
    let out = d;
    if (type === 'metric') out = { key: d.key, step: Number(d.step), value: metricValue(d.value) };
    else if (type === 'progress') out = { step: Number(d.step), total: Number(d.total) };
    else if (type === 'status') out = { status: d.status || d.to || '', error: d.error || '' };
    onEvent({ type, data: out, id: eventId });
  });
}

/**
 * Streams POST /v1/completions. params: {model, prompt, max_tokens, temperature, top_p, top_k,
 * seed, stop}. onChunk({text, finishReason, usage}) per SSE event. Resolves when [DONE] arrives.
 */
export async function streamCompletion(params, onChunk, signal) {
  const body = { ...params, stream: true, stream_options: { include_usage: true } };
  const res = await send('POST', PATHS.completions, body, signal);
  let done = false;
  let failure = null;
  await readSse(res, ({ data }) => {
    if (data === '[DONE]') {
      done = true;
      return false;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      return;
    }
    if (chunk.error) {
      failure = new ApiError(500, chunk.error.message || String(chunk.error));
      return false;
    }
    const choice = (chunk.choices || [])[0] || {};
    onChunk({ text: choice.text || '', finishReason: choice.finish_reason || null, usage: chunk.usage || null });
  });
  if (failure) throw failure;
  return { done };
}

/**
 * Streams POST /v1/chat/completions. params: {model, messages: [{role, content}], max_tokens,
 * temperature, top_p, top_k, seed, stop}. The server renders the checkpoint's chat template.
 * onChunk({text, finishReason, usage}).
 */
export async function streamChat(params, onChunk, signal) {
  const body = { ...params, stream: true, stream_options: { include_usage: true } };
  const res = await send('POST', PATHS.chatCompletions, body, signal);
  let done = false;
  let failure = null;
  await readSse(res, ({ data }) => {
    if (data === '[DONE]') {
      done = true;
      return false;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      return;
    }
    if (chunk.error) {
      failure = new ApiError(500, chunk.error.message || String(chunk.error));
      return false;
    }
    const choice = (chunk.choices || [])[0] || {};
    onChunk({ text: (choice.delta && choice.delta.content) || '', finishReason: choice.finish_reason || null, usage: chunk.usage || null });
  });
  if (failure) throw failure;
  return { done };
}
