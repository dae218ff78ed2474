// Chat parity between `ktl serve` and llama.cpp (prebuilt, through node-llama-cpp 3.21.1) on a
// tiny ChatML chat model trained here (ktl prepare-data, train, sft; a few seconds):
//   - node-llama-cpp resolves the exported GGUF's chat wrapper from its tokenizer.chat_template:
//     JinjaTemplateChatWrapper, i.e. our template itself (node-llama-cpp keeps the Jinja template
//     when it renders tool calls its ChatMLChatWrapper would render differently, and it reads our
//     Hermes <tool_call> syntax from it); the test prints the name and asserts it, and that
//     without Jinja (noJinja, like llama.cpp's built-in detection) it resolves ChatMLChatWrapper;
//   - for 10 conversations (system messages, multi-turn; no empty contents, which
//     ChatMLChatWrapper drops: tests/tokenizer covers them against transformers' Jinja) the
//     wrapper's prompt tokens equal
//     ChatMLChatWrapper's and the count `ktl serve` reports, and where the CLI can express the
//     conversation, `ktl generate --chat`'s ids exactly;
//   - llama.cpp's greedy answer (f32 GGUF, stopping at an end-of-generation token) equals
//     /v1/chat/completions' greedy answer (fp32) token for token: the bytes of every token (the
//     server's logprobs) and the finish reason.
// Exit code 77 (skipped) when node_modules is missing (run `make test-deps`) or this platform
// has no prebuilt llama.cpp binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unavailableReason, loadLlama } from './llama_peer.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const why = unavailableReason();
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
const nlc = await import('node-llama-cpp');

const KTL = process.env.KTL_BIN || join(here, '..', '..', '..', 'build', 'ktl');
const MAX_TOKENS = 24;
const work = mkdtempSync(join(tmpdir(), 'ktl-chat-parity-'));
const ckpt = join(work, 'sft', 'final');
const gguf = join(work, 'chat-f32.gguf');

// Korean sentences from a fixed grammar (deterministic LCG, its high bits).
function lcg(seed) {
  let s = seed;
  return (a) => a[((s = (s * 1103515245 + 12345) % 2147483648) >>> 16) % a.length];
}
const SUBJ = ['나는', '우리는', '친구가', '선생님께서', '학생들이', '어머니는', '고양이가', '동생이'];
const PLACE = ['학교에서', '서울에서', '도서관에서', '집 앞에서', '시장에서', '공원에서', '카페에서'];
const OBJ = ['책을', '밥을', '커피를', '영화를', '편지를', '노래를', '사진을', '숙제를'];
const VERB = ['읽었다.', '먹었어요.', '마셨습니다.', '보았다.', '썼어요.', '불렀습니다.', '찍었다.'];
function koreanCorpus(n) {
  const pick = lcg(12345);
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(`${pick(SUBJ)} ${pick(PLACE)} ${pick(OBJ)} ${pick(VERB)}`);
  return lines.join('\n') + '\n';
}
// Chat data: who did what where, answered from a fixed rule, some with a system message.
function chatData(n) {
  const pick = lcg(777);
  const rows = [];
  for (let i = 0; i < n; i++) {
    const [s, p, o] = [pick(SUBJ), pick(PLACE), pick(OBJ)];
    const messages = [];
    if (i % 3 === 0) messages.push({ role: 'system', content: '짧게 답해.' });
    messages.push({ role: 'user', content: `${s} ${p} 무엇을 했어요?` });
    messages.push({ role: 'assistant', content: `${s} ${p} ${o} ${pick(VERB)}` });
    rows.push(JSON.stringify({ messages }));
  }
  return rows.join('\n') + '\n';
}

// The conversations both runtimes answer (OpenAI messages; the last one is the user's).
const CONVERSATIONS = [
  [{ role: 'user', content: '나는 학교에서 무엇을 했어요?' }],
  [{ role: 'user', content: '고양이가 공원에서 무엇을 했어요?' }],
  [{ role: 'system', content: '짧게 답해.' }, { role: 'user', content: '친구가 카페에서 무엇을 했어요?' }],
  [{ role: 'system', content: '짧게 답해.' }, { role: 'user', content: '어머니는 시장에서 무엇을 했어요?' }],
  [{ role: 'user', content: '안녕하세요' }],
  [{ role: 'system', content: '너는 친절한 도우미야.' }, { role: 'user', content: '오늘 뭐 했어?' }],
  [{ role: 'user', content: '동생이 도서관에서 무엇을 했어요?' },
   { role: 'assistant', content: '동생이 도서관에서 책을 읽었다.' },
   { role: 'user', content: '선생님께서 서울에서 무엇을 했어요?' }],
  [{ role: 'system', content: '짧게 답해.' },
   { role: 'user', content: '우리는 집 앞에서 무엇을 했어요?' },
   { role: 'assistant', content: '우리는 집 앞에서 사진을 찍었다.' },
   { role: 'user', content: '학생들이 학교에서 무엇을 했어요?' }],
  [{ role: 'user', content: '안녕' }, { role: 'assistant', content: '안녕하세요' },
   { role: 'user', content: '고양이가 학교에서 무엇을 했어요?' }, { role: 'assistant', content: '모르겠어요.' },
   { role: 'user', content: '나는 카페에서 무엇을 했어요?' }],
  [{ role: 'user', content: 'What did 고양이가 do? 123' }],
];

function ktl(args) {
  const r = spawnSync(KTL, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `ktl ${args.join(' ')} failed (${r.error ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
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

function toHistory(messages) {
  const h = [];
  for (const m of messages) {
    if (m.role === 'system') h.push({ type: 'system', text: m.content });
    else if (m.role === 'user') h.push({ type: 'user', text: m.content });
    else h.push({ type: 'model', response: [m.content] });
  }
  h.push({ type: 'model', response: [] });  // the turn to generate
  return h;
}

let server;
let baseURL;
let model;
let resolved;
let bytesOf;
const results = [];

async function startServer() {
  server = spawn(KTL, ['serve', '--host', '127.0.0.1', '--port', '0', '--model', ckpt,
                       '--data-dir', join(work, 'serve-data'), '--dtype', 'fp32', '--threads', '2',
                       '--kv-cache-mb', '32'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  baseURL = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${baseURL}/health`);
      if (r.status === 200 && (await r.json()).status === 'ok') return;
    } catch {}
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`ktl serve never became healthy:\n${log}`);
}

// llama.cpp's greedy answer: ids until an end-of-generation token (not included) or MAX_TOKENS.
async function llamaAnswer(promptIds) {
  const ctx = await model.createContext({ contextSize: 512, threads: 2 });
  try {
    const ids = [];
    let stopped = false;
    for await (const t of ctx.getSequence().evaluate(promptIds, { temperature: 0, yieldEogToken: true })) {
      if (model.isEogToken(t)) {
        stopped = true;
        break;
      }
      ids.push(t);
      if (ids.length >= MAX_TOKENS) break;
    }
    return { ids, finish: stopped ? 'stop' : 'length' };
  } finally {
    await ctx.dispose();
  }
}

before(async () => {
  assert.ok(existsSync(KTL), `${KTL} not built`);
  writeFileSync(join(work, 'corpus.txt'), koreanCorpus(3000));
  writeFileSync(join(work, 'chat.jsonl'), chatData(200));
  writeFileSync(join(work, 'tiny.yaml'),
      'vocab_size: 400\nhidden_size: 64\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n' +
      'intermediate_size: 128\nmax_seq_length: 256\n');
  // A new tokenizer reserves <|im_start|> <|im_end|>: the base model is ChatML already.
  ktl(['prepare-data', '--input', join(work, 'corpus.txt'), '--output', join(work, 'data'),
       '--vocab-size', '400', '--input-sentence-size', '0', '--val-fraction', '0.05',
       '--test-fraction', '0', '--txt-docs', 'line', '--quiet']);
  ktl(['train', '--model-config', join(work, 'tiny.yaml'), '--data', join(work, 'data'),
       '--output-dir', join(work, 'run'), '--max-steps', '60', '--batch-size', '8',
       '--max-seq-length', '64', '--learning-rate', '0.003', '--min-learning-rate', '0.0003',
       '--warmup-steps', '5', '--num-threads', '2', '--bf16', 'false', '--save-steps', '0',
       '--eval-steps', '0', '--sample-steps', '0', '--log-steps', '20']);
  ktl(['sft', '--init-from', join(work, 'run', 'final'), '--data', join(work, 'chat.jsonl'),
       '--output-dir', join(work, 'sft'), '--val-fraction', '0', '--max-steps', '150',
       '--batch-size', '8', '--max-seq-length', '128', '--learning-rate', '0.01',
       '--min-learning-rate', '0.001', '--warmup-steps', '5', '--save-steps', '0',
       '--eval-steps', '0', '--sample-steps', '0', '--log-steps', '20', '--bf16', 'false',
       '--device', 'cpu', '--num-threads', '2']);
  assert.ok(existsSync(join(ckpt, 'tokenizer_config.json')), `no SFT checkpoint at ${ckpt}`);
  ktl(['export', '--model', ckpt, '--format', 'gguf', '--dtype', 'f32', '--out', gguf]);
  bytesOf = vocabBytes(join(work, 'data', 'tokenizer.vocab'));
  await startServer();
  model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  resolved = nlc.resolveChatWrapper(model);
  const chatml = new nlc.ChatMLChatWrapper();
  for (const messages of CONVERSATIONS) {
    const history = toHistory(messages);
    const promptIds = Array.from(resolved.generateContextState({ chatHistory: history })
                                         .contextText.tokenize(model.tokenizer));
    const chatmlIds = Array.from(chatml.generateContextState({ chatHistory: history })
                                       .contextText.tokenize(model.tokenizer));
    const res = await fetch(`${baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages, temperature: 0, max_tokens: MAX_TOKENS, logprobs: true }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    // `ktl generate --chat` takes a system message and one user message.
    let cli = null;
    const users = messages.filter((m) => m.role === 'user');
    if (messages.every((m) => m.role !== 'assistant')) {
      const args = ['generate', '--model', ckpt, '--chat', '--prompt', users[0].content,
                    '--temperature', '0', '--max-tokens', String(MAX_TOKENS), '--json',
                    '--threads', '2', '--kv-cache-mb', '16', '--dtype', 'fp32'];
      const sys = messages.find((m) => m.role === 'system');
      if (sys) args.push('--system', sys.content);
      cli = JSON.parse(ktl(args).trim().split('\n').pop());
    }
    results.push({ messages, promptIds, chatmlIds, serve: body, cli, llama: await llamaAnswer(promptIds) });
  }
});

after(async () => {
  await model?.dispose();
  await llama?.dispose();
  if (server) {
    server.kill('SIGTERM');
    await new Promise((res) => server.on('exit', res));
  }
  if (process.env.KTL_KEEP_WORK) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
});

test('node-llama-cpp resolves the GGUF to our template, and to ChatML without Jinja', () => {
  console.log(`node-llama-cpp chat wrapper: ${resolved.constructor.name} (${resolved.wrapperName})`);
  assert.equal(resolved.constructor.name, 'JinjaTemplateChatWrapper');
  // It read our Hermes tool-call syntax from the template.
  assert.equal(resolved.settings.functions.call.prefix.toJSON()[0].value, '<tool_call>\n{"name": "');
  const noJinja = nlc.resolveChatWrapper(model, { noJinja: true });
  console.log(`without Jinja: ${noJinja.constructor.name}`);
  assert.equal(noJinja.constructor.name, 'ChatMLChatWrapper');
});

test('the prompt tokens: the resolved wrapper, ChatMLChatWrapper, ktl serve and ktl generate agree', () => {
  for (const r of results) {
    const what = JSON.stringify(r.messages);
    assert.equal(r.promptIds[0], model.tokens.bos, what);
    assert.deepEqual(r.promptIds, r.chatmlIds, what);
    assert.equal(r.serve.usage.prompt_tokens, r.promptIds.length, what);
    if (r.cli) assert.deepEqual(r.cli.prompt_ids, r.promptIds, what);
  }
  assert.ok(results.filter((r) => r.cli).length >= 5);
});

test('greedy answers: llama.cpp (f32 GGUF) equals ktl serve (fp32) token for token', () => {
  let stops = 0;
  for (const r of results) {
    const what = JSON.stringify(r.messages);
    const served = r.serve.choices[0].logprobs.content.map((e) => Buffer.from(e.bytes));
    // The server lists the end-of-turn token it stopped at (not in the text); llama.cpp's
    // answer ends before it.
    if (r.serve.choices[0].finish_reason === 'stop')
      assert.equal(served.pop().toString(), '<|im_end|>', what);
    const fromLlama = r.llama.ids.map((id) => bytesOf[id]);
    assert.deepEqual(served.map((b) => b.toString('hex')), fromLlama.map((b) => b.toString('hex')),
                     `${what}\nktl serve: ${r.serve.choices[0].message.content}\n` +
                     `llama.cpp: ${Buffer.concat(fromLlama).toString()}`);
    assert.equal(r.serve.choices[0].finish_reason, r.llama.finish, what);
    assert.equal(r.serve.usage.completion_tokens, r.llama.ids.length + (r.llama.finish === 'stop' ? 1 : 0),
                 what);
    if (r.cli) assert.deepEqual(r.cli.ids.filter((id) => !model.isEogToken(id)), r.llama.ids, what);
    stops += r.llama.finish === 'stop';
    console.log(`${r.messages.at(-1).content} -> ${r.serve.choices[0].message.content} [${r.llama.finish}]`);
  }
  assert.ok(stops >= 5, `only ${stops} of 10 answers ended at <|im_end|>`);
  // A model that says one thing to everything would make the comparison weak.
  const distinct = new Set(results.map((r) => r.serve.choices[0].message.content)).size;
  assert.ok(distinct >= 5, `only ${distinct} distinct answers`);
});
