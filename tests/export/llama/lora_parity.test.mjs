// LoRA parity with llama.cpp (prebuilt, through node-llama-cpp 3.21.1): a tiny base model
// trained here for a few seconds (ktl prepare-data, train), an adapter on every projection with
// a random non-zero B (tests/export/lora_fixture_main.cpp: core/adapters attach_lora,
// save_peft_adapter) and the base with that adapter merged into its weights (merge_lora).
//   - `ktl export --format gguf` writes the base GGUF (f32), `ktl export --format gguf-lora` the
//     adapter GGUF (f32; the base is found through adapter_config.json's
//     base_model_name_or_path, which the fixture sets to the base checkpoint);
//   - node-llama-cpp loads the base GGUF with the adapter GGUF (createContext({lora})), and its
//     greedy ids equal `ktl generate --temperature 0` on the merged checkpoint (fp32), prompt ids
//     and every generated id, for several prompts;
//   - without the adapter llama.cpp's ids equal ktl's on the base and differ from the adapter's
//     (so the adapter is applied, and applied as ktl applies it);
//   - when this ktl serves adapters (`ktl serve --adapter NAME=DIR`), the 4 prompts with the
//     adapter and the 4 without, sent at once (so decode batches mix both), give llama.cpp's text:
//     /v1/completions' greedy text (fp32, 32 tokens, EOS ignored) equals the bytes of
//     llama.cpp's ids (tokenizer.vocab), and the usage counts 32 tokens.
// Exit code 77 (skipped) when node_modules is missing (run `make test-deps`), this platform has
// no prebuilt llama.cpp binary, or the fixture binary was not built.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unavailableReason, loadLlama, promptTokens, greedy, koreanCorpus } from './llama_peer.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const KTL = process.env.KTL_BIN || join(here, '..', '..', '..', 'build', 'ktl');
const FIXTURE = process.env.KTL_LORA_FIXTURE ||
                join(here, '..', '..', '..', 'build', 'tests', 'export', 'ktl_lora_fixture');
const why = unavailableReason() ?? (existsSync(FIXTURE) ? null : `${FIXTURE} not built`);
if (why) {
  console.log(`SKIP: ${why}`);
  process.exit(77);
}
let llama;
try {
  llama = await loadLlama({ threads: 2 });
} catch (e) {
  console.log(`SKIP: no usable prebuilt llama.cpp binary on this machine: ${e.message}`);
  process.exit(77);
}

const PROMPTS = ['나는 학교에서', '고양이가 공원에서 사진을', '선생님께서', '우리는 카페에서 커피를'];
const N = 32;  // generated tokens compared per prompt
const work = mkdtempSync(join(tmpdir(), 'ktl-lora-parity-'));
const base = join(work, 'run', 'final');
const adapter = join(work, 'adapter');
const merged = join(work, 'merged');

function run(bin, args) {
  const r = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${bin} ${args.join(' ')} failed (${r.error ?? r.signal}):\n` +
                            `${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const ktl = (args) => run(KTL, args);

function ktlGreedy(ckpt, prompt) {
  const out = ktl(['generate', '--model', ckpt, '--prompt', prompt, '--max-tokens', String(N),
                   '--temperature', '0', '--ignore-eos', '--json', '--dtype', 'fp32',
                   '--threads', '2', '--kv-cache-mb', '16']);
  return JSON.parse(out.trim().split('\n').pop());
}

// llama.cpp's greedy ids for every prompt, a fresh context each (with the adapter when given).
async function llamaGreedy(model, lora) {
  const res = [];
  for (const prompt of PROMPTS) {
    const ctx = await model.createContext({
      contextSize: 256, threads: 2, ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
    });
    const prompt_ids = promptTokens(model, prompt);
    const steps = await greedy(ctx.getSequence(), prompt_ids, N);
    res.push({ prompt_ids, ids: steps.map((s) => s.token) });
    await ctx.dispose();
  }
  return res;
}

// id -> the bytes the token stands for, from SentencePiece's tokenizer.vocab (one piece a line).
function vocabBytes(path) {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((line) => {
    const piece = line.split('\t')[0];
    const m = /^<0x([0-9A-F]{2})>$/.exec(piece);
    if (m) return Buffer.from([parseInt(m[1], 16)]);
    if (['<pad>', '<unk>', '<s>', '</s>'].includes(piece)) return Buffer.alloc(0);
    return Buffer.from(piece.replaceAll('\u2581', ' '), 'utf8');
  });
}

// `ktl serve` on a free port with the adapter as "lora"; null when this ktl has no --adapter.
let server;
async function startServer() {
  const help = spawnSync(KTL, ['serve', '--help'], { encoding: 'utf8' });
  if (!/--adapter\b/.test(help.stdout + help.stderr)) return null;
  server = spawn(KTL, ['serve', '--host', '127.0.0.1', '--port', '0', '--model', base,
                       '--adapter', `lora=${adapter}`, '--data-dir', join(work, 'serve-data'),
                       '--dtype', 'fp32', '--threads', '2', '--kv-cache-mb', '32'],
                 { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const onData = (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    };
    server.stdout.on('data', onData);
    server.stderr.on('data', (d) => { log += d; });
    server.on('exit', (code) => reject(new Error(`ktl serve exited (${code}):\n${log}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200 && (await r.json()).status === 'ok') return url;
    } catch {}
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`ktl serve never became healthy:\n${log}`);
}

// Greedy completions for every prompt under `model`, all sent at once.
async function serveGreedy(url, model) {
  return Promise.all(PROMPTS.map(async (prompt) => {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt, max_tokens: N, temperature: 0, ignore_eos: true }),
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    return { text: body.choices[0].text, tokens: body.usage.completion_tokens };
  }));
}

const runs = {};

before(async () => {
  assert.ok(existsSync(KTL), `${KTL} not built`);
  writeFileSync(join(work, 'corpus.txt'), koreanCorpus(3000));
  writeFileSync(join(work, 'tiny.yaml'),
      'vocab_size: 400\nhidden_size: 64\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n' +
      'intermediate_size: 128\nmax_seq_length: 128\n');
  ktl(['prepare-data', '--input', join(work, 'corpus.txt'), '--output', join(work, 'data'),
       '--vocab-size', '400', '--input-sentence-size', '0', '--val-fraction', '0.05',
       '--test-fraction', '0', '--txt-docs', 'line', '--quiet']);
  ktl(['train', '--model-config', join(work, 'tiny.yaml'), '--data', join(work, 'data'),
       '--output-dir', join(work, 'run'), '--max-steps', '80', '--batch-size', '8',
       '--max-seq-length', '64', '--learning-rate', '0.003', '--min-learning-rate', '0.0003',
       '--warmup-steps', '5', '--num-threads', '2', '--bf16', 'false', '--save-steps', '0',
       '--eval-steps', '0', '--sample-steps', '0', '--log-steps', '40']);
  run(FIXTURE, [base, adapter, merged, '8', '3', '0.05']);
  ktl(['export', '--model', base, '--format', 'gguf', '--dtype', 'f32',
       '--out', join(work, 'base-f32.gguf')]);
  ktl(['export', '--format', 'gguf-lora', '--adapter', adapter, '--dtype', 'f32',
       '--out', join(work, 'adapter-f32.gguf')]);
  runs.ktlMerged = PROMPTS.map((p) => ktlGreedy(merged, p));
  runs.ktlBase = PROMPTS.map((p) => ktlGreedy(base, p));
  const model = await llama.loadModel({ modelPath: join(work, 'base-f32.gguf'), gpuLayers: 0 });
  try {
    runs.llamaBase = await llamaGreedy(model, null);
    runs.llamaLora = await llamaGreedy(model, join(work, 'adapter-f32.gguf'));
  } finally {
    await model.dispose();
  }
  const url = await startServer();
  if (url) {
    const ids = (await (await fetch(`${url}/v1/models`)).json()).data.map((m) => m.id);
    assert.ok(ids.includes('lora'), `/v1/models lists ${ids}`);
    const baseName = ids.find((id) => id !== 'lora');
    // One burst: rows of the adapter and of the bare base decode in the same batches.
    [runs.serveLora, runs.serveBase] =
        await Promise.all([serveGreedy(url, 'lora'), serveGreedy(url, baseName)]);
  }
});

after(async () => {
  await llama?.dispose();
  if (server) {
    server.kill('SIGTERM');
    await new Promise((res) => server.on('exit', res));
  }
  if (process.env.KTL_KEEP_WORK) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
});

const common = (a, b) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

function assertSameIds(ktlRuns, llamaRuns, what) {
  PROMPTS.forEach((p, i) => {
    const k = ktlRuns[i].ids;
    const l = llamaRuns[i].ids;
    assert.equal(k.length, N);
    assert.deepEqual(llamaRuns[i].prompt_ids, ktlRuns[i].prompt_ids, `"${p}": prompt ids`);
    assert.deepEqual(l, k, `${what}, "${p}": ids part at ${common(k, l)}\n` +
                           `ktl       ${k}\nllama.cpp ${l}`);
  });
}

test('base GGUF + adapter GGUF in llama.cpp: the same greedy ids as ktl on the merged model', () => {
  assertSameIds(runs.ktlMerged, runs.llamaLora, 'with the adapter');
});

test('without the adapter llama.cpp matches ktl on the base, and the adapter changes the ids', () => {
  assertSameIds(runs.ktlBase, runs.llamaBase, 'without the adapter');
  const report = PROMPTS.map((p, i) => `"${p}": ${common(runs.llamaBase[i].ids, runs.llamaLora[i].ids)}` +
                                       `/${N} leading ids shared by base and adapter`);
  console.log(report.join('\n'));
  PROMPTS.forEach((p, i) => {
    assert.notDeepEqual(runs.llamaLora[i].ids, runs.llamaBase[i].ids, `"${p}": adapter not applied`);
    assert.notDeepEqual(runs.ktlMerged[i].ids, runs.ktlBase[i].ids, `"${p}": merge changed nothing`);
  });
});

test('ktl serve --adapter: the adapter and the bare base in one batch give llama.cpp\'s text', (t) => {
  if (!runs.serveLora) {
    t.skip('this ktl serve has no --adapter');
    return;
  }
  const bytesOf = vocabBytes(join(work, 'data', 'tokenizer.vocab'));
  const text = (ids) => new TextDecoder().decode(Buffer.concat(ids.map((id) => bytesOf[id])));
  for (const [served, peer, what] of [[runs.serveLora, runs.llamaLora, 'adapter'],
                                      [runs.serveBase, runs.llamaBase, 'base']]) {
    PROMPTS.forEach((p, i) => {
      assert.equal(served[i].tokens, N, `${what}, "${p}": completion tokens`);
      assert.equal(served[i].text, text(peer[i].ids), `${what}, "${p}": served text`);
    });
  }
});
