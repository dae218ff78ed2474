// Unit tests of the dashboard's browser-free modules under Node (no chromium needed):
// the fetch-based SSE parser (web/src/sse.js) and the job-spec / wire-format helpers
// (web/src/api.js), LoRA: the model choices from /v1/models, a job's adapter checkpoints.
//   node tests/e2e/web_units.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSse } from '../../web/src/sse.js';
import {
  adapterCheckpoints,
  buildSftJobSpec,
  buildTrainJobSpec,
  defaultAdapterName,
  jobLora,
  modelChoices,
  normalizeAdapter,
  normalizeJob,
  taskNames,
  taskMetric,
} from '../../web/src/api.js';
import { ema } from '../../web/src/util.js';

/** A Response whose body arrives in the given byte chunks. */
function chunked(parts) {
  const enc = new TextEncoder();
  const stream = new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(typeof p === 'string' ? enc.encode(p) : p);
      c.close();
    },
  });
  return new Response(stream);
}

async function collect(parts) {
  const out = [];
  await readSse(chunked(parts), (ev) => out.push(ev));
  return out;
}

test('SSE: events split anywhere across chunks, CRLF and a CR/LF pair split in two', async () => {
  const text = 'id: 7\r\nevent: metric\r\ndata: {"key":"train/loss","step":3,"value":2.5}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n';
  const whole = await collect([text]);
  assert.deepEqual(whole, [
    { event: 'metric', data: '{"key":"train/loss","step":3,"value":2.5}', id: '7' },
    { event: 'message', data: '[DONE]', id: '7' },
  ]);
  for (let cut = 1; cut < text.length; cut++) {
    assert.deepEqual(await collect([text.slice(0, cut), text.slice(cut)]), whole, `cut at ${cut}`);
  }
});

test('SSE: multi-line data, a field without a value, no space after the colon', async () => {
  const got = await collect(['data:a\ndata: b\ndata\nevent:x\n\n']);
  assert.deepEqual(got, [{ event: 'x', data: 'a\nb\n', id: '' }]);
});

test('SSE: a UTF-8 character split between chunks arrives whole', async () => {
  const bytes = new TextEncoder().encode('data: {"text":"한국어"}\n\n');
  const got = await collect([bytes.slice(0, 17), bytes.slice(17)]);
  assert.equal(JSON.parse(got[0].data).text, '한국어');
});

test('SSE: returning false stops reading; a final event without a blank line is kept', async () => {
  const seen = [];
  await readSse(chunked(['data: 1\n\ndata: 2\n\ndata: 3\n\n']), (ev) => {
    seen.push(ev.data);
    return ev.data !== '2' && undefined;
  });
  assert.deepEqual(seen, ['1', '2']);
  assert.deepEqual((await collect(['data: tail'])).map((e) => e.data), ['tail']);
});

test('job spec from the form: a pipeline with typed options, defaults left to the server', () => {
  const spec = buildTrainJobSpec({
    name: 'run',
    corpus: 'path',
    dataPath: 'corpus/ko.txt',
    model: 'tiny',
    maxSteps: 200,
    batchSize: 8,
    learningRate: 6e-4,
    evalSteps: null,
    sampleSteps: 50,
    saveSteps: undefined,
    logSteps: 5,
  });
  assert.deepEqual(spec, {
    kind: 'pipeline',
    name: 'run',
    options: {
      prepare_data: { input: 'corpus/ko.txt', vocab_size: 8000 },
      train: {
        config: 'configs/training.yaml',
        model_config: 'configs/model_tiny.yaml',
        max_steps: 200,
        batch_size: 8,
        learning_rate: 6e-4,
        warmup_steps: 20,
        sample_steps: 50,
        log_steps: 5,
      },
    },
  });
  const def = buildTrainJobSpec({ name: 'd', corpus: 'default', model: 'small', maxSteps: 5, vocabSize: 600, warmupSteps: 0 });
  assert.deepEqual(def.options.prepare_data, { default_corpus: true, vocab_size: 600 });
  assert.equal(def.options.train.model_config, 'configs/model_small.yaml');
  assert.equal(def.options.train.warmup_steps, 0);
});

test('job wire format: seconds become ms, latest metrics may be objects, null stays NaN', () => {
  const j = normalizeJob({
    id: 4,
    kind: 'train',
    name: 'x',
    status: 'running',
    cancel_requested: true,
    progress: { step: 10, total: 40, fraction: 0.25 },
    created_at: 1764300000.5,
    started_at: null,
    latest_metrics: { 'train/loss': { step: 10, value: 3.5, time: 1 }, 'val/loss': { step: 8, value: null } },
  });
  assert.equal(j.createdAt, 1764300000500);
  assert.equal(j.startedAt, null);
  assert.equal(j.step, 10);
  assert.equal(j.total, 40);
  assert.equal(j.cancelRequested, true);
  assert.equal(j.metrics['train/loss'], 3.5);
  assert.ok(Number.isNaN(j.metrics['val/loss']));
  assert.equal(normalizeJob({ id: 1, status: 'queued' }).metrics, null, 'list rows carry no metrics');
});

test('EMA smoothing is debiased and skips gaps', () => {
  assert.deepEqual(ema([1, 2, 3], 0), [1, 2, 3]);
  const s = ema([4, null, 4, 4], 0.9);
  assert.equal(s[0], 4); // debiased: the first value is not pulled towards 0
  assert.equal(s[1], null);
  assert.ok(Math.abs(s[3] - 4) < 1e-12);
  const t = ema([0, 10], 0.5);
  assert.ok(t[1] > 5 && t[1] < 10);
});

test('SFT job spec from the form: kind sft, checkpoint and chat data, empty fields left out', () => {
  const spec = buildSftJobSpec({
    name: 'chat',
    initFrom: 'jobs/1/checkpoints/final',
    data: 'chatbot-qa.tsv',
    maxSteps: 300,
    batchSize: 8,
    learningRate: 0.0001,
    valFraction: null,
    evalSteps: 50,
    sampleSteps: '',
    noPack: false,
  });
  assert.deepEqual(spec, {
    kind: 'sft',
    name: 'chat',
    options: { init_from: 'jobs/1/checkpoints/final', data: 'chatbot-qa.tsv', max_steps: 300, batch_size: 8, learning_rate: 0.0001, eval_steps: 50 },
  });
  assert.equal(buildSftJobSpec({ name: 'p', initFrom: 'a', data: 'b', noPack: true }).options.no_pack, true);
});

test('task metrics: the task names of task/<name>/acc keys', () => {
  assert.deepEqual(taskNames(['train/loss', 'task/kornli/acc', 'task/kornli/acc_norm', 'task/nsmc-sentiment/acc', 'task/x/acc_norm']), ['kornli', 'nsmc-sentiment']);
  assert.equal(taskMetric('kornli'), 'task/kornli/acc');
  assert.equal(taskMetric('kornli', 'acc_norm'), 'task/kornli/acc_norm');
});

test('model choices: each base followed by its adapters, labelled with their parent', () => {
  const body = {
    object: 'list',
    data: [
      { id: 'chat-a', object: 'model', parent: 'ktl-small', root: '/d/jobs/4/checkpoints/step-300' },
      { id: 'ktl-small', object: 'model', root: '/d/models/small' },
      { id: 'orphan', object: 'model', parent: 'gone' },
      { id: 'chat-b', object: 'model', parent: 'ktl-small' },
    ],
  };
  assert.deepEqual(modelChoices(body), [
    { id: 'ktl-small', parent: '', label: 'ktl-small' },
    { id: 'chat-a', parent: 'ktl-small', label: 'chat-a · adapter of ktl-small' },
    { id: 'chat-b', parent: 'ktl-small', label: 'chat-b · adapter of ktl-small' },
    { id: 'orphan', parent: 'gone', label: 'orphan · adapter of gone' },
  ]);
  assert.deepEqual(modelChoices({ object: 'list', data: [] }), []);
  assert.deepEqual(modelChoices({}), [], 'a body without data is no model');
  assert.deepEqual(modelChoices({ data: [{ id: 'm' }] }), [{ id: 'm', parent: '', label: 'm' }], 'a server without adapters');
});

test('a LoRA job: its settings from the checkpoints once they exist, else from the spec', () => {
  // GET /v1/jobs (no checkpoints): the spec's lora_* options say it.
  const listed = normalizeJob({ id: 7, kind: 'sft', status: 'running', spec: { kind: 'sft', options: { init_from: 'jobs/1/final', lora_rank: 16, lora_targets: 'q, v' } } });
  assert.deepEqual(jobLora(listed), { rank: 16, alpha: null, targets: ['q', 'v'], base: 'jobs/1/final' });
  assert.deepEqual(adapterCheckpoints(listed), []);

  // GET /v1/jobs/{id}: the checkpoints' adapter_config.json wins (a config file may have set it).
  const detail = normalizeJob({
    id: 7,
    kind: 'sft',
    status: 'succeeded',
    spec: { kind: 'sft', options: { config: 'lora.yaml' } },
    checkpoints: [
      { step: 100, path: '/d/jobs/7/checkpoints/checkpoint-100', adapter: { rank: 8, alpha: 16, targets: ['q', 'k', 'v', 'o'], base: '/d/base' } },
      { step: 200, path: '/d/jobs/7/checkpoints/checkpoint-200', adapter: { rank: 8, alpha: 16, targets: ['q', 'k', 'v', 'o'], base: '/d/base' } },
      { step: 250, path: '/d/jobs/7/checkpoints/broken', adapter: { error: 'adapter_config.json: "use_dora" is not supported', base: null } },
    ],
  });
  assert.deepEqual(jobLora(detail), { rank: 8, alpha: 16, targets: ['q', 'k', 'v', 'o'], base: '/d/base' });
  assert.deepEqual(adapterCheckpoints(detail).map((c) => c.step), [250, 200, 100], 'newest first, the refused one too (it shows its error)');
  assert.match(adapterCheckpoints(detail)[0].adapter.error, /use_dora/);

  // Full training: no LoRA, whatever its checkpoints.
  const full = normalizeJob({ id: 3, kind: 'train', status: 'succeeded', spec: { options: { lora_rank: 0 } }, checkpoints: [{ step: 5, path: '/d/x', adapter: null }] });
  assert.equal(jobLora(full), null);
  assert.deepEqual(adapterCheckpoints(full), []);
  // A pipeline's train stage; other kinds never train an adapter.
  assert.equal(jobLora(normalizeJob({ id: 4, kind: 'pipeline', spec: { options: { train: { lora_rank: 4, lora_alpha: 8 } } } })).alpha, 8);
  assert.equal(jobLora(normalizeJob({ id: 5, kind: 'eval', spec: { options: { lora_rank: 4 } } })), null);
  assert.equal(jobLora(normalizeJob({ id: 6, kind: 'train' })), null, 'no spec, no checkpoints');
});

test('adapter names and the /v1/adapters rows', () => {
  assert.equal(defaultAdapterName(12, 300), 'job12-step300');
  assert.match(defaultAdapterName('a b/c', 1), /^[A-Za-z0-9._:-]+$/, 'only characters the server accepts');
  const a = normalizeAdapter({ object: 'adapter', name: 'chat', path: '/d/a', rank: 16, alpha: 32, targets: ['q', 'v'], state: 'draining', in_flight: 2, requests_total: 9, load_ms: 41.5, bytes: 1024 });
  assert.deepEqual(a, { name: 'chat', path: '/d/a', rank: 16, alpha: 32, targets: ['q', 'v'], state: 'draining', inFlight: 2, requestsTotal: 9, loadMs: 41.5, bytes: 1024 });
  const bare = normalizeAdapter({ name: 'x' });
  assert.equal(bare.state, 'ready');
  assert.equal(bare.rank, null);
  assert.deepEqual(bare.targets, []);
  assert.equal(bare.inFlight, 0);
});
