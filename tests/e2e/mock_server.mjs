// A stand-in for `ktl serve` for developing and page-testing the dashboard without the C++
// server: serves web/ statically and fakes the /v1 API (jobs that "train" on a timer with
// falling loss and improving Korean samples, streamed completions, serving counters, LoRA jobs
// whose checkpoints are adapters and /v1/adapters serving them beside the model).
// It follows the same contract as the real server; the real e2e test never uses it.
//
//   node tests/e2e/mock_server.mjs [--port 8090] [--api-key KEY] [--no-model] [--seed-jobs]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WEB_ROOT = path.resolve(HERE, '../../web');
const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml' };

const SAMPLES = [
  '의 의 의 다 다 . . 고 고 는 는',
  '한국 의 수도 는 는 서울 이 다 다 .',
  '대한민국의 수도는 서울이고 다 많은 사람이 있다 있다.',
  '대한민국의 수도는 서울이며, 한강이 도시를 가로질러 흐른다.',
  '대한민국의 수도는 서울이다. 서울은 한강을 따라 발전한 도시로, 약 천만 명이 살고 있다.',
];
const PROMPTS = ['대한민국의 수도는', '오늘 날씨가'];
const COMPLETION = '서울이다. 서울은 한반도의 중심에 자리 잡은 도시로, 오랜 역사와 현대적인 모습을 함께 지니고 있다. 한강이 도시를 가로질러 흐르며 많은 사람들이 이곳에서 살아간다.';

function tokens(text) {
  // Fake sub-word pieces: 1-2 syllables (or a space/punctuation) per token.
  const out = [];
  let i = 0;
  const chars = [...text];
  while (i < chars.length) {
    const n = chars[i] === ' ' || /[.,]/.test(chars[i]) ? 1 : 1 + ((i * 7) % 2);
    out.push(chars.slice(i, i + n).join(''));
    i += n;
  }
  return out;
}

export function startMockServer({ port = 0, apiKey = '', model = 'ktl-tiny-ko', seedJobs = false, stepMs = 60 } = {}) {
  const jobs = new Map();
  let nextId = 1;
  let nextEventId = 1;
  let loadedModel = model;
  const serving = { running: 0, waiting: 0, kv_blocks_used: 0, kv_blocks_total: 512, prefix_cache_hit_rate: 0.42, tokens_generated: 0, spec_proposed: 40, spec_accepted: 30, spec_acceptance_rate: 0.75, spec_mean_accepted_length: 2.5 };
  const adapters = new Map(); // name -> GET /v1/adapters row
  const requestedModels = []; // the "model" of each completion request, in order

  // A LoRA job's checkpoints carry "adapter" as GET /v1/jobs/{id} reports it (adapter_config.json).
  function loraOf(spec) {
    const o = (spec.options && (spec.options.train || spec.options)) || {};
    if (!(Number(o.lora_rank) > 0)) return null;
    return { rank: Number(o.lora_rank), alpha: Number(o.lora_alpha ?? 32), targets: String(o.lora_targets || 'q,k,v,o,gate,up,down').split(','), base: o.init_from || null };
  }

  function makeJob(spec, { status = 'queued', steps = 0 } = {}) {
    const o = (spec.options && spec.options.train) || spec.options || {};
    const total = Number(o.max_steps || 200);
    const job = {
      id: nextId++,
      kind: spec.kind,
      name: spec.name,
      spec,
      status,
      progress: { step: 0, total },
      created_at: new Date(Date.now() - (seedJobs && steps ? 3600e3 : 0)).toISOString(),
      started_at: null,
      finished_at: null,
      latest_metrics: {},
      error: '',
      metrics: [], // {key, step, value, time}
      samples: [],
      checkpoints: [], // {step, path, metrics, time}
      events: [], // {id, type, data}: replayed to each new events stream
      cancelRequested: false,
      listeners: new Set(),
      saveEvery: Number(o.save_steps || 100),
      evalEvery: Number(o.eval_steps || 50),
      sampleEvery: Number(o.sample_steps || 50),
      timer: null,
    };
    jobs.set(job.id, job);
    for (let s = 1; s <= steps; s++) advance(job, s);
    if (steps) job.progress.step = steps;
    return job;
  }

  function emit(job, type, data) {
    const ev = { id: nextEventId++, type, data: { ...data, job_id: job.id, time: Date.now() / 1000 } };
    job.events.push(ev);
    for (const send of job.listeners) send(ev);
  }

  function metric(job, key, step, value) {
    const p = { key, step, value, time: Date.now() / 1000 };
    job.metrics.push(p);
    job.latest_metrics[key] = value;
    emit(job, 'metric', { key, step, value });
  }

  function advance(job, step) {
    const total = job.progress.total;
    const noise = Math.sin(step * 12.9898 + job.id) * 0.15;
    const loss = 2.1 + 7 * Math.exp(-step / (total / 5)) + noise;
    const warm = Math.min(1, step / 20);
    const lr = 6e-4 * warm * (0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * step) / total)));
    metric(job, 'train/loss', step, loss);
    metric(job, 'train/lr', step, lr);
    metric(job, 'train/tokens_per_s', step, 2100 + 150 * Math.sin(step / 7));
    metric(job, 'train/grad_norm', step, 0.4 + 2.5 * Math.exp(-step / 40) + Math.abs(noise));
    if (step % job.evalEvery === 0 || step === total) {
      const val = 2.25 + 7 * Math.exp(-step / (total / 5));
      metric(job, 'val/loss', step, val);
      metric(job, 'val/ppl', step, Math.exp(val));
      metric(job, 'val/bpc', step, val / Math.LN2 / 1.6);
      // task_eval: accuracy by likelihood at each evaluation.
      metric(job, 'task/nsmc-sentiment/acc', step, Math.min(0.9, 0.5 + step / 400));
      metric(job, 'task/nsmc-sentiment/acc_norm', step, Math.min(0.9, 0.48 + step / 400));
    }
    if (step % job.saveEvery === 0 || step === total) {
      const c = { step, path: `/tmp/mock/jobs/${job.id}/checkpoints/step-${step}`, metrics: { 'train/loss': loss }, time: Date.now() / 1000, adapter: loraOf(job.spec) };
      job.checkpoints.push(c);
      emit(job, 'checkpoint', { step: c.step, path: c.path, metrics: c.metrics });
    }
    if (step % job.sampleEvery === 0 || step === total) {
      const q = Math.min(SAMPLES.length - 1, Math.floor((SAMPLES.length * step) / (total + 1)));
      for (const prompt of PROMPTS) {
        const text = SAMPLES[q].startsWith(prompt) ? SAMPLES[q].slice(prompt.length) : ` ${SAMPLES[q]}`;
        for (const kind of ['greedy', 'sampled']) {
          const s = { step, prompt, text: kind === 'greedy' ? text : text.split('').reverse().join('').replace(/^\./, '') + '.', kind };
          job.samples.push(s);
          emit(job, 'sample', s);
        }
      }
    }
  }

  function setStatus(job, status, error = '') {
    const from = job.status;
    job.status = status;
    job.error = error;
    if (status === 'running') job.started_at = new Date().toISOString();
    if (['succeeded', 'failed', 'cancelled'].includes(status)) job.finished_at = new Date().toISOString();
    emit(job, 'status', error ? { from, to: status, error } : { from, to: status });
    if (['succeeded', 'failed', 'cancelled', 'interrupted'].includes(status)) {
      for (const end of job.enders || []) end();
    }
  }

  function run(job) {
    setTimeout(() => {
      if (job.status !== 'queued') return;
      setStatus(job, 'running');
      job.timer = setInterval(() => {
        const step = job.progress.step + 1;
        advance(job, step);
        job.progress.step = step;
        emit(job, 'progress', { step, total: job.progress.total });
        if (step >= job.progress.total) {
          clearInterval(job.timer);
          setStatus(job, 'succeeded');
        }
      }, stepMs);
    }, 300);
  }

  if (seedJobs) {
    const done = makeJob({ kind: 'pipeline', name: 'baseline-tiny', options: { max_steps: 300, eval_steps: 50, sample_steps: 100 } }, { steps: 300 });
    done.status = 'succeeded';
    done.started_at = new Date(Date.now() - 3500e3).toISOString();
    done.finished_at = new Date(Date.now() - 3000e3).toISOString();
    const bad = makeJob({ kind: 'train', name: 'lr-too-high', options: { max_steps: 300 } }, { steps: 40 });
    bad.status = 'failed';
    bad.error = 'loss became NaN at step 41 (learning_rate 0.01); last checkpoint: step 0';
    bad.started_at = new Date(Date.now() - 2900e3).toISOString();
    bad.finished_at = new Date(Date.now() - 2890e3).toISOString();
    const lora = makeJob({ kind: 'sft', name: 'chat-lora', options: { init_from: '/tmp/mock/jobs/1/checkpoints/step-300', data: 'chatbot-qa.tsv', max_steps: 200, save_steps: 100, lora_rank: 16, lora_alpha: 32, lora_targets: 'q,k,v,o' } }, { steps: 200 });
    lora.status = 'succeeded';
    lora.started_at = new Date(Date.now() - 2800e3).toISOString();
    lora.finished_at = new Date(Date.now() - 2700e3).toISOString();
  }

  const secs = (iso) => (iso ? Date.parse(iso) / 1000 : null);
  // The wire format of ktl serve's job routes: the list has no latest_metrics / checkpoints.
  const publicJob = (j) => ({
    id: j.id, object: 'job', kind: j.kind, name: j.name, status: j.status, cancel_requested: j.cancelRequested,
    spec: j.spec, progress: { ...j.progress, fraction: j.progress.total ? j.progress.step / j.progress.total : 0 },
    created_at: secs(j.created_at), started_at: secs(j.started_at), finished_at: secs(j.finished_at),
    error: j.error || null, output_dir: `/tmp/mock/jobs/${j.id}`,
  });
  const jobDetail = (j) => {
    const latest = {};
    for (const m of j.metrics) latest[m.key] = { step: m.step, value: m.value, time: m.time };
    return { ...publicJob(j), latest_metrics: latest, checkpoints: j.checkpoints };
  };

  function send(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
  const err = (res, status, message, type = 'invalid_request_error') => send(res, status, { error: { message, type, code: status } });

  function readBody(req) {
    return new Promise((resolve) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        try {
          resolve(data ? JSON.parse(data) : {});
        } catch {
          resolve(undefined);
        }
      });
    });
  }

  function sse(res) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  }

  function serveStatic(req, res, pathname) {
    let rel = decodeURIComponent(pathname);
    if (rel === '/') rel = '/index.html';
    const file = path.resolve(WEB_ROOT, `.${rel}`);
    if (!file.startsWith(WEB_ROOT + path.sep)) return err(res, 404, 'not found');
    fs.readFile(file, (e, data) => {
      if (e) return err(res, 404, 'not found');
      res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream' });
      res.end(data);
    });
  }

  async function completions(req, res) {
    const body = await readBody(req);
    if (!body || typeof body.prompt !== 'string') return err(res, 400, 'prompt must be a string');
    if (!loadedModel) return err(res, 503, 'no model loaded', 'server_error');
    // "model" picks the base or one of its adapters; what it named is recorded for the tests.
    if (body.model && body.model !== loadedModel && !adapters.has(body.model)) return err(res, 404, `model '${body.model}' is not loaded`);
    if (adapters.has(body.model)) adapters.get(body.model).requests_total++;
    requestedModels.push(body.model || '');
    const max = Math.max(1, Math.min(Number(body.max_tokens || 16), 256));
    const pieces = tokens(COMPLETION).slice(0, max);
    const id = `cmpl-${Date.now()}`;
    const chunk = (text, finish, usage) => `data: ${JSON.stringify({ id, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: loadedModel, choices: [{ index: 0, text, finish_reason: finish }], ...(usage ? { usage } : {}) })}\n\n`;
    if (!body.stream) {
      return send(res, 200, { id, object: 'text_completion', model: loadedModel, choices: [{ index: 0, text: pieces.join(''), finish_reason: 'length' }], usage: { prompt_tokens: 5, completion_tokens: pieces.length, total_tokens: 5 + pieces.length } });
    }
    sse(res);
    serving.running++;
    let i = 0;
    let closed = false;
    res.on('close', () => (closed = true));
    const tick = () => {
      if (closed) return void serving.running--;
      if (i < pieces.length) {
        serving.tokens_generated++;
        serving.kv_blocks_used = 3 + Math.floor(i / 16);
        res.write(chunk(pieces[i++], null));
        return setTimeout(tick, 25);
      }
      res.write(chunk('', pieces.length >= max ? 'length' : 'stop'));
      if (body.stream_options?.include_usage) res.write(`data: ${JSON.stringify({ id, object: 'text_completion', choices: [], usage: { prompt_tokens: 5, completion_tokens: pieces.length, total_tokens: 5 + pieces.length } })}\n\n`);
      res.end('data: [DONE]\n\n');
      serving.running--;
      serving.kv_blocks_used = 0;
    };
    setTimeout(tick, 120); // "prefill"
  }

  function events(req, res, job, since) {
    sse(res);
    const write = (ev) => res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`);
    for (const ev of job.events) if (ev.id > since) write(ev);
    const ping = setInterval(() => res.write(': keep-alive\n\n'), 10000);
    const end = () => {
      clearInterval(ping);
      job.listeners.delete(write);
      job.enders?.delete(finish);
    };
    const finish = () => {
      end();
      res.end(`event: end\ndata: ${JSON.stringify({ job_id: job.id, status: job.status })}\n\n`);
    };
    res.on('close', end);
    if (!['queued', 'running'].includes(job.status)) return finish();
    job.listeners.add(write);
    (job.enders ||= new Set()).add(finish);
  }

  async function route(req, res) {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    if (p === '/health') return send(res, 200, { status: 'ok' });
    if (!p.startsWith('/v1/')) return serveStatic(req, res, p);
    if (apiKey && req.headers.authorization !== `Bearer ${apiKey}`) return err(res, 401, 'missing or wrong API key', 'authentication_error');
    const m = p.match(/^\/v1\/jobs\/(\d+)(?:\/(\w+))?$/);
    if (p === '/v1/models' && req.method === 'GET') {
      const data = loadedModel ? [{ id: loadedModel, object: 'model', owned_by: 'ktl' }] : [];
      if (loadedModel) for (const a of adapters.values()) if (a.state === 'ready') data.push({ id: a.name, object: 'model', owned_by: 'ktl', root: a.path, parent: loadedModel });
      return send(res, 200, { object: 'list', data });
    }
    if (p === '/v1/adapters' && req.method === 'GET') return send(res, 200, { object: 'list', data: [...adapters.values()] });
    if (p === '/v1/adapters' && req.method === 'POST') {
      const body = await readBody(req);
      if (!body || typeof body.name !== 'string' || !body.name) return err(res, 400, "'name' must be a non-empty string");
      if (!/^[A-Za-z0-9._:-]{1,64}$/.test(body.name)) return err(res, 400, `adapter name '${body.name}' must be 1-64 of [A-Za-z0-9._:-]`);
      if (typeof body.path !== 'string' || !body.path) return err(res, 400, "'path' must be a non-empty string");
      const ck = [...jobs.values()].flatMap((j) => j.checkpoints).find((c) => c.path === body.path);
      if (!ck) return err(res, 404, `adapter directory '${body.path}' does not exist`);
      if (!loadedModel) return err(res, 503, 'no model is loaded: adapters need a base model');
      if (!ck.adapter) return err(res, 400, `cannot load the adapter: no adapter_config.json in ${body.path}`);
      if (adapters.has(body.name) || body.name === loadedModel) return err(res, 409, `adapter '${body.name}' is already loaded`);
      const a = { object: 'adapter', name: body.name, path: body.path, rank: ck.adapter.rank, alpha: ck.adapter.alpha, targets: ck.adapter.targets, state: 'ready', in_flight: 0, requests_total: 0, load_ms: 12.5, bytes: 1 << 20 };
      adapters.set(a.name, a);
      return send(res, 200, a);
    }
    const am = p.match(/^\/v1\/adapters\/([^/]+)$/);
    if (am && req.method === 'DELETE') {
      const name = decodeURIComponent(am[1]);
      if (!adapters.has(name)) return err(res, 404, `adapter '${name}' is not loaded`);
      adapters.delete(name);
      return send(res, 200, { name, state: 'unloaded' });
    }
    if (p === '/v1/models/load' && req.method === 'POST') {
      const body = await readBody(req);
      if (!body) return err(res, 400, 'invalid JSON');
      if (body.job_id !== undefined) {
        const job = jobs.get(Number(body.job_id));
        if (!job) return err(res, 404, `no job ${body.job_id}`);
        if (!job.checkpoints.length && job.status !== 'succeeded') return err(res, 409, `job ${job.id} has no checkpoint yet`);
        loadedModel = `job-${job.id}-${job.name}`;
      } else if (body.path) loadedModel = path.basename(body.path);
      else return err(res, 400, 'job_id or path required');
      return send(res, 200, { status: 'loading', path: loadedModel });
    }
    if (p === '/v1/serving') return send(res, 200, { model: loadedModel || null, model_state: loadedModel ? 'ready' : 'none', max_context: 256, adapters_loaded: adapters.size, ...serving, requests_total: 3, ttft_p50_s: 0.021, ttft_p99_s: 0.064 });
    if (p === '/v1/completions' && req.method === 'POST') return completions(req, res);
    if (p === '/v1/jobs' && req.method === 'GET') return send(res, 200, { object: 'list', data: [...jobs.values()].map(publicJob) });
    if (p === '/v1/jobs' && req.method === 'POST') {
      const body = await readBody(req);
      if (!body || typeof body.kind !== 'string' || typeof body.name !== 'string') return err(res, 400, 'kind and name are required strings');
      if (body.kind === 'pipeline') {
        const o = body.options || {};
        if (typeof o.prepare_data !== 'object' || typeof o.train !== 'object') return err(res, 400, 'options.prepare_data and options.train are required');
        if (!o.train.config || !o.train.model_config) return err(res, 400, 'options.train.config and model_config are required');
        if (!o.prepare_data.default_corpus && !o.prepare_data.input) return err(res, 400, 'options.prepare_data.input is required');
      }
      const job = makeJob(body);
      run(job);
      return send(res, 201, publicJob(job));
    }
    if (m) {
      const job = jobs.get(Number(m[1]));
      if (!job) return err(res, 404, `no job ${m[1]}`);
      const sub = m[2];
      if (!sub && req.method === 'GET') return send(res, 200, jobDetail(job));
      if (sub === 'metrics') {
        const key = url.searchParams.get('key');
        const since = url.searchParams.has('since_step') ? Number(url.searchParams.get('since_step')) : -Infinity;
        const series = {};
        for (const x of job.metrics) if ((!key || x.key === key) && x.step > since) (series[x.key] ||= []).push({ step: x.step, value: x.value, time: x.time });
        return send(res, 200, { object: 'metrics', job_id: job.id, series });
      }
      if (sub === 'samples') return send(res, 200, { object: 'list', job_id: job.id, data: job.samples });
      if (sub === 'events') return events(req, res, job, Number(url.searchParams.get('since') || req.headers['last-event-id'] || 0));
      if (sub === 'cancel' && req.method === 'POST') {
        if (!['queued', 'running'].includes(job.status)) return err(res, 409, `job ${job.id} is ${job.status}`);
        clearInterval(job.timer);
        setStatus(job, 'cancelled');
        return send(res, 200, publicJob(job));
      }
      if (sub === 'resume' && req.method === 'POST') {
        if (!['cancelled', 'interrupted', 'failed'].includes(job.status)) return err(res, 409, `job ${job.id} is ${job.status}`);
        job.status = 'queued';
        run(job);
        return send(res, 200, publicJob(job));
      }
    }
    return err(res, 404, `no route ${req.method} ${p}`);
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => {
      console.error(e);
      if (!res.headersSent) err(res, 500, String(e), 'server_error');
    });
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const close = () =>
        new Promise((r) => {
          for (const j of jobs.values()) clearInterval(j.timer);
          server.closeAllConnections();
          server.close(() => r());
        });
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close, jobs, adapters, requestedModels });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, def) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : def;
  };
  const srv = await startMockServer({
    port: Number(opt('--port', 8090)),
    apiKey: opt('--api-key', process.env.KTL_API_KEY || ''),
    model: args.includes('--no-model') ? '' : 'ktl-tiny-ko',
    seedJobs: args.includes('--seed-jobs'),
    stepMs: Number(opt('--step-ms', 60)),
  });
  console.log(`mock ktl serve on ${srv.url}`);
}
