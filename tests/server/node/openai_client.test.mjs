// The official `openai` npm client against a real `ktl serve` (tiny random model built here with
// the ktl CLI): completions and chat, streaming and not, errors mapped to the client's classes.
// Exit code 77 (skipped) when node_modules is missing: run `make test-deps` (npm install).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
if (!existsSync(join(here, 'node_modules', 'openai'))) {
  console.log('SKIP: tests/server/node/node_modules missing (make test-deps)');
  process.exit(77);
}
const { default: OpenAI } = await import('openai');
const { z } = await import('zod');
const { zodResponseFormat } = await import('openai/helpers/zod');

const KTL = process.env.KTL_BIN || join(here, '..', '..', '..', 'build', 'ktl');
const KEY = 'node-test-key';
const work = mkdtempSync(join(tmpdir(), 'ktl-openai-'));
let server;
let baseURL;
let modelName;

function koreanCorpus(n) {
  const subj = ['나는', '우리는', '친구가', '선생님께서', '학생들이', '어머니는', '고양이가', '동생이'];
  const place = ['학교에서', '서울에서', '도서관에서', '집 앞에서', '시장에서', '공원에서', '카페에서'];
  const obj = ['책을', '밥을', '커피를', '영화를', '편지를', '노래를', '사진을', '숙제를'];
  const verb = ['읽었다.', '먹었어요.', '마셨습니다.', '보았다.', '썼어요.', '불렀습니다.', '찍었다.'];
  let s = 12345;
  const pick = (a) => a[(s = (s * 1103515245 + 12345) % 2147483648) % a.length];
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(`${pick(subj)} ${pick(place)} ${pick(obj)} ${pick(verb)}`);
  return lines.join('\n') + '\n';
}

function run(args) {
  const r = spawnSync(KTL, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `ktl ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
}

async function waitHealthy(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200 && (await r.json()).status === 'ok') return;
    } catch {}
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('server never became healthy');
}

before(async () => {
  writeFileSync(join(work, 'corpus.txt'), koreanCorpus(2000));
  writeFileSync(join(work, 'tiny.yaml'),
      'vocab_size: 500\nhidden_size: 64\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n' +
      'intermediate_size: 128\nmax_seq_length: 1024\n');
  run(['train-tokenizer', '--input', join(work, 'corpus.txt'), '--output', join(work, 'tok'),
       '--vocab-size', '500', '--character-coverage', '1.0', '--input-sentence-size', '0']);
  run(['init-model', '--model-config', join(work, 'tiny.yaml'), '--tokenizer', join(work, 'tok'),
       '--out', join(work, 'model')]);
  server = spawn(KTL, ['serve', '--host', '127.0.0.1', '--port', '0', '--model', join(work, 'model'),
                       '--data-dir', join(work, 'data'), '--api-key', KEY, '--kv-cache-mb', '32'],
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
  baseURL = `http://127.0.0.1:${port}`;
  await waitHealthy(baseURL, 60000);
});

after(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((res) => server.on('exit', (code, sig) => res({ code, sig })));
    server.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 0, 'ktl serve should exit 0 on SIGTERM');
  }
  rmSync(work, { recursive: true, force: true });
});

const client = () => new OpenAI({ apiKey: KEY, baseURL: `${baseURL}/v1`, maxRetries: 0 });

test('models.list returns the served model', async () => {
  const page = await client().models.list();
  assert.equal(page.data.length, 1);
  modelName = page.data[0].id;
  assert.equal(page.data[0].object, 'model');
});

test('completions: streamed text equals the non-streamed text for one seed', async () => {
  const params = { model: modelName, prompt: '나는 학교에서', max_tokens: 24, seed: 7,
                   temperature: 0.8, ignore_eos: true };
  const whole = await client().completions.create(params);
  assert.equal(whole.object, 'text_completion');
  assert.equal(whole.choices[0].finish_reason, 'length');
  assert.equal(whole.usage.completion_tokens, 24);
  const stream = await client().completions.create({ ...params, stream: true,
                                                    stream_options: { include_usage: true } });
  let text = '';
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) { text += c.text; chunks++; }
  }
  assert.ok(chunks >= 3, `expected several chunks, got ${chunks}`);
  assert.equal(text, whole.choices[0].text);
  assert.equal(usage.completion_tokens, 24);
});

test('chat: streaming and non-streaming agree', async () => {
  const params = { model: modelName, messages: [{ role: 'user', content: '안녕하세요?' }],
                   max_tokens: 16, seed: 3, temperature: 0.7 };
  const whole = await client().chat.completions.create(params);
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
  const stream = await client().chat.completions.create({ ...params, stream: true });
  let text = '';
  let role = null;
  let finish = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test('errors map to the client error classes', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${baseURL}/v1`, maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
  await assert.rejects(
      client().completions.create({ model: 'no-such-model', prompt: 'a', max_tokens: 2 }),
      (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(
      client().completions.create({ model: modelName, prompt: 'a', max_tokens: -1 }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens');
});

test('completions logprobs: k rivals per token, streamed and not alike', async () => {
  const params = { model: modelName, prompt: '나는 학교에서', max_tokens: 8, seed: 3,
                   temperature: 1.0, ignore_eos: true, logprobs: 2 };
  const whole = await client().completions.create(params);
  const lp = whole.choices[0].logprobs;
  assert.equal(lp.tokens.length, 8);
  assert.equal(lp.token_logprobs.length, 8);
  assert.equal(lp.text_offset.length, 8);
  for (let i = 0; i < 8; i++) {
    assert.ok(lp.token_logprobs[i] <= 0);
    const tops = Object.values(lp.top_logprobs[i]);
    assert.ok(tops.length >= 2 && tops.length <= 3, JSON.stringify(lp.top_logprobs[i]));
    assert.ok(Math.max(...tops) >= lp.token_logprobs[i] - 1e-6);
  }
  const stream = await client().completions.create({ ...params, stream: true });
  const tokens = [];
  const values = [];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.logprobs) { tokens.push(...c.logprobs.tokens); values.push(...c.logprobs.token_logprobs); }
    }
  }
  assert.deepEqual(tokens, lp.tokens);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(values[i] - lp.token_logprobs[i]) < 1e-5);
});

test('echo with max_tokens 0 scores batched prompts as evaluation harnesses ask', async () => {
  const r = await client().completions.create({
    model: modelName, prompt: ['나는 학교에서 책을 읽었다.', '고양이가 공원에서'],
    echo: true, logprobs: 1, max_tokens: 0, temperature: 0 });
  assert.equal(r.choices.length, 2);
  for (const c of r.choices) {
    assert.ok(c.text.startsWith(c.index === 0 ? '나는 학교에서' : '고양이가'));
    const lp = c.logprobs;
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    assert.ok(lp.tokens.length >= 3);
    for (let i = 1; i < lp.tokens.length; i++) assert.ok(lp.token_logprobs[i] <= 0);
  }
  assert.equal(r.usage.completion_tokens, 0);
});

test('chat logprobs: content entries with bytes and top_logprobs, streamed too', async () => {
  const params = { model: modelName, messages: [{ role: 'user', content: '안녕하세요' }],
                   max_tokens: 6, seed: 5, temperature: 1.0, logprobs: true, top_logprobs: 3 };
  const whole = await client().chat.completions.create(params);
  const content = whole.choices[0].logprobs.content;
  assert.ok(content.length >= 1);
  for (const e of content) {
    assert.equal(typeof e.token, 'string');
    assert.ok(Array.isArray(e.bytes));
    assert.ok(e.logprob <= 0);
    assert.equal(e.top_logprobs.length, 3);
  }
  const stream = await client().chat.completions.create({ ...params, stream: true });
  const streamed = [];
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (c && c.logprobs) streamed.push(...c.logprobs.content);
  }
  assert.deepEqual(streamed.map((e) => e.token), content.map((e) => e.token));
});

test('structured output: a zod schema through the SDK helper parses', async () => {
  const Person = z.object({
    name: z.string().max(6),
    age: z.number().int().min(0).max(120),
    city: z.enum(['서울', '부산', '대구']),
    tags: z.array(z.string().max(4)).max(2),
  });
  for (let seed = 0; seed < 3; seed++) {
    const r = await client().beta.chat.completions.parse({
      model: modelName, messages: [{ role: 'user', content: '사람 정보를 JSON으로' }],
      response_format: zodResponseFormat(Person, 'person'), max_tokens: 200, temperature: 1.0, seed });
    const parsed = r.choices[0].message.parsed;
    assert.ok(parsed, r.choices[0].message.content);
    Person.parse(parsed);
  }
  await assert.rejects(client().chat.completions.create({
    model: modelName, messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', not: { const: 'a' } } } } }),
    (e) => e instanceof OpenAI.BadRequestError && /not/.test(e.message));
});

test('tools: a call, its result, and the final answer', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: '날씨',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: ['서울', '부산'] } },
                  required: ['city'], additionalProperties: false } } }];
  const messages = [{ role: 'user', content: '서울 날씨 알려줘' }];
  const first = await client().chat.completions.create({
    model: modelName, messages, tools, tool_choice: 'required', max_tokens: 200, seed: 1 });
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
  assert.equal(choice.message.content, null);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.ok(['서울', '부산'].includes(JSON.parse(call.function.arguments).city));
  // Streamed: the deltas accumulate to the same call.
  const stream = await client().chat.completions.create({
    model: modelName, messages, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } },
    max_tokens: 200, seed: 1, stream: true });
  let args = '';
  let name = null;
  let finish = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    for (const d of c.delta.tool_calls || []) {
      if (d.function?.name) name = d.function.name;
      args += d.function?.arguments || '';
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(name, 'get_weather');
  assert.equal(finish, 'tool_calls');
  assert.deepEqual(JSON.parse(args), JSON.parse(call.function.arguments));
  // The round trip: the call and its result go back; tool_choice none gives text.
  const final = await client().chat.completions.create({
    model: modelName, tools, tool_choice: 'none', max_tokens: 10, seed: 2,
    messages: [...messages, choice.message,
               { role: 'tool', tool_call_id: call.id, content: '{"temp": 3, "sky": "맑음"}' }] });
  assert.equal(typeof final.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(final.choices[0].finish_reason));
  assert.ok(final.usage.prompt_tokens > first.usage.prompt_tokens);
});

test('llama.cpp-style /tokenize and /detokenize round trip', async () => {
  const post = (path, body) => fetch(`${baseURL}${path}`, { method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify(body) }).then((r) => r.json());
  const t = await post('/tokenize', { content: '나는 학교에서', with_pieces: true });
  assert.ok(t.tokens.length >= 2);
  assert.ok(typeof t.tokens[0].id === 'number' && 'piece' in t.tokens[0]);
  const d = await post('/detokenize', { tokens: t.tokens.map((x) => x.id) });
  assert.equal(d.content, '나는 학교에서');
});
