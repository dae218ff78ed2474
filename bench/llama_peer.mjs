// llama.cpp's side of bench/llama_peer.sh, through node-llama-cpp's prebuilt CPU binaries
// (tests/export/llama/node_modules, installed by `make test-deps`), and the table at the end.
//
//   node bench/llama_peer.mjs run GGUF NAME [--threads 2] [--prompt-tokens 32] [--gen-tokens 64]
//                                [--streams 16] [--prefill-tokens 512]
//       one JSON line: decode_tok_s (1 stream), aggregate_tok_s (N streams), prefill_tok_s and
//       ttft_ms (a prefill-tokens prompt, one new token), peak_rss_mb. One process per model, so
//       peak RSS is per model.
//   node bench/llama_peer.mjs table RESULTS.jsonl
//       the side-by-side table of ktl's `ktl bench --json` lines and the lines above (tagged
//       "runtime": "llama.cpp"), best of the rounds in the file, with ratios ktl / llama.cpp.
//
// Measured like `ktl bench`: random prompt tokens (BOS, then ids >= 4), greedy, EOS ignored;
// decode tok/s = (tokens - 1) / (last token time - first token time) per stream; aggregate = all
// streams' tokens after their first over the span from the first stream's first token to the
// last token; prefill tok/s = prompt tokens / time to first token.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const peer = await import(join(here, '..', 'tests', 'export', 'llama', 'llama_peer.mjs'));

function flag(args, name, def) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
}

function randomPrompt(n, vocab, bos, seed) {
  let s = BigInt(seed);
  const ids = [bos];
  for (let i = 1; i < n; i++) {
    s = (s * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    ids.push(4 + Number((s >> 33n) % BigInt(vocab - 4)));
  }
  return ids;
}

// Streams greedy continuations on the sequences of one context at once; returns each stream's
// token times. The streams move in lock-step (each waits for the others' token before asking for
// its next one), so node-llama-cpp puts all of them in one llama_decode batch per step, as a
// batching server does; otherwise a stream whose sampling finished first can be decoded alone.
async function runStreams(ctx, prompts, gen) {
  const seqs = prompts.map(() => ctx.getSequence());
  let arrived = 0;
  let release;
  let gate = new Promise((r) => (release = r));
  const t0 = performance.now();
  const times = await Promise.all(prompts.map(async (p, s) => {
    const ts = [];
    for await (const _ of seqs[s].evaluate(p, { temperature: 0, yieldEogToken: true })) {
      ts.push(performance.now());
      if (ts.length >= gen) break;
      const mine = gate;
      if (++arrived === prompts.length) {
        arrived = 0;
        const open = release;
        gate = new Promise((r) => (release = r));
        open();
      }
      await mine;
    }
    return ts;
  }));
  for (const s of seqs) s.dispose();
  return { t0, times };
}

async function run(args) {
  const [gguf, name] = args;
  const threads = flag(args, 'threads', 2);
  const P = flag(args, 'prompt-tokens', 32);
  const G = flag(args, 'gen-tokens', 64);
  const N = flag(args, 'streams', 16);
  const PF = flag(args, 'prefill-tokens', 512);
  const why = peer.unavailableReason();
  if (why) throw new Error(why);
  const llama = await peer.loadLlama({ threads });
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const meta = model.fileInfo.metadata;
  const vocab = meta.llama?.vocab_size ?? meta.tokenizer.ggml.tokens.length;
  const bos = model.tokens.bos ?? 1;
  const make = (sequences, ctxSize) =>
    model.createContext({ sequences, contextSize: ctxSize, batchSize: 512, threads });
  let seed = 1000;
  const out = { runtime: 'llama.cpp', dtype: name, threads, streams: N, prompt_tokens: P,
                gen_tokens: G, prefill_tokens: PF, llama_cpp_version: llama.llamaCppRelease?.release };

  // Prefill: one stream, a PF-token prompt, one new token (after a short warm-up).
  {
    const ctx = await make(1, PF + 16);
    await runStreams(ctx, [randomPrompt(16, vocab, bos, seed++)], 4);
    const { t0, times } = await runStreams(ctx, [randomPrompt(PF, vocab, bos, seed++)], 1);
    out.ttft_ms = times[0][0] - t0;
    out.prefill_tok_s = PF / (out.ttft_ms / 1000);
    await ctx.dispose();
  }
  // Decode: 1 stream, then N streams in one context.
  for (const n of [1, N]) {
    const ctx = await make(n, P + G + 16);
    await runStreams(ctx, [randomPrompt(16, vocab, bos, seed++)], 4);
    const prompts = Array.from({ length: n }, () => randomPrompt(P, vocab, bos, seed++));
    const { times } = await runStreams(ctx, prompts, G);
    let first = Infinity, last = 0, tokens = 0, perStream = 0;
    for (const ts of times) {
      first = Math.min(first, ts[0]);
      last = Math.max(last, ts[ts.length - 1]);
      tokens += ts.length - 1;
      perStream += (ts.length - 1) / ((ts[ts.length - 1] - ts[0]) / 1000) / times.length;
    }
    if (n === 1) out.decode_tok_s = perStream;
    else out.aggregate_tok_s = tokens / ((last - first) / 1000);
    await ctx.dispose();
  }
  out.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  await model.dispose();
  await llama.dispose();
  console.log(JSON.stringify(out));
}

function table(args) {
  const rows = readFileSync(args[0], 'utf8').split('\n').filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l));
  // ktl: one line per (dtype, streams) from `ktl bench --json`, plus a prefill-only line.
  // Best of the rounds: highest tok/s, lowest TTFT, per runtime and weight type.
  const ktl = {};
  const llama = {};
  const best = (o, key, v, lower = false) => {
    if (v == null || !Number.isFinite(v)) return;
    if (o[key] == null || (lower ? v < o[key] : v > o[key])) o[key] = v;
  };
  let rounds = 0;
  for (const r of rows) {
    if (r.runtime === 'llama.cpp') {
      const l = (llama[r.dtype] ??= { n: 0 });
      l.n++;
      rounds = Math.max(rounds, l.n);
      for (const k of ['decode_tok_s', 'aggregate_tok_s', 'prefill_tok_s']) best(l, k, r[k]);
      best(l, 'ttft_ms', r.ttft_ms, true);
      best(l, 'peak_rss_mb', r.peak_rss_mb);
      l.streams = r.streams;
      l.prefill_tokens = r.prefill_tokens;
      continue;
    }
    const k = (ktl[r.dtype] ??= {});
    best(k, 'peak_rss_mb', r.peak_rss_mb);
    if (r.phase === 'prefill') {
      best(k, 'prefill_tok_s', r.prefill_tok_s);
      best(k, 'ttft_ms', (r.prompt_tokens / r.prefill_tok_s) * 1000, true);
    } else if (r.streams === 1) {
      best(k, 'decode_tok_s', r.decode_tok_s);
    } else {
      best(k, 'aggregate_tok_s', r.aggregate_tok_s);
      k.streams = r.streams;
    }
  }
  const f = (v, d = 1) => (v == null ? '-' : v.toFixed(d));
  const anyL = Object.values(llama)[0] ?? {};
  const N = anyL.streams ?? Object.values(ktl)[0]?.streams ?? 16;
  const PF = anyL.prefill_tokens ?? 512;
  const lines = [];
  const pad = (s, n) => String(s).padEnd(n);
  const padl = (s, n) => String(s).padStart(n);
  lines.push(`best of ${rounds} round(s)`);
  lines.push(`${pad('runtime / weights', 20)}${padl('1-stream tok/s', 16)}${padl(`${N}-stream agg tok/s`, 20)}` +
             `${padl(`TTFT ${PF} ms`, 14)}${padl('prefill tok/s', 15)}${padl('peak RSS MB', 13)}`);
  const line = (label, r) => lines.push(`${pad(label, 20)}${padl(f(r.decode_tok_s), 16)}` +
      `${padl(f(r.aggregate_tok_s), 20)}${padl(f(r.ttft_ms, 0), 14)}${padl(f(r.prefill_tok_s, 0), 15)}` +
      `${padl(f(r.peak_rss_mb, 0), 13)}`);
  for (const d of Object.keys(ktl)) line(`ktl ${d}`, ktl[d]);
  for (const d of Object.keys(llama)) line(`llama.cpp ${d}`, llama[d]);
  lines.push('');
  lines.push('ratios ktl / llama.cpp (> 1: ktl faster; prefill as tok/s, i.e. llama.cpp TTFT / ktl TTFT)');
  lines.push(`${pad('', 20)}${padl('1-stream', 16)}${padl(`${N}-stream agg`, 20)}${padl('prefill', 14)}`);
  const ratio = (a, b) => (a == null || b == null ? '-' : (a / b).toFixed(2));
  for (const d of Object.keys(ktl))
    for (const l of Object.keys(llama))
      lines.push(`${pad(`${d} / ${l}`, 20)}${padl(ratio(ktl[d].decode_tok_s, llama[l].decode_tok_s), 16)}` +
                 `${padl(ratio(ktl[d].aggregate_tok_s, llama[l].aggregate_tok_s), 20)}` +
                 `${padl(ratio(ktl[d].prefill_tok_s, llama[l].prefill_tok_s), 14)}`);
  console.log(lines.join('\n'));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'run') await run(rest);
else if (mode === 'table') table(rest);
else {
  console.error('usage: llama_peer.mjs run GGUF NAME [--threads N] ... | table RESULTS.jsonl');
  process.exit(2);
}
