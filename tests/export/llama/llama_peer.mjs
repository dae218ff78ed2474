// llama.cpp as ktl's peer, through node-llama-cpp's prebuilt CPU binaries (pinned in
// package.json next to this file). Shared by llama_peer.test.mjs and bench/llama_peer.mjs.
//
// Never builds llama.cpp and never downloads anything: getLlama() is told `build: "never"`,
// `skipDownload: true`, `gpu: false`, and NODE_LLAMA_CPP_SKIP_DOWNLOAD is set before the import.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// Korean sentences from a fixed grammar (deterministic LCG, its high bits: ~1900 distinct lines),
// the corpus the peer tests train their tiny models on.
export function koreanCorpus(n) {
  const subj = ['나는', '우리는', '친구가', '선생님께서', '학생들이', '어머니는', '고양이가', '동생이'];
  const place = ['학교에서', '서울에서', '도서관에서', '집 앞에서', '시장에서', '공원에서', '카페에서'];
  const obj = ['책을', '밥을', '커피를', '영화를', '편지를', '노래를', '사진을', '숙제를'];
  const verb = ['읽었다.', '먹었어요.', '마셨습니다.', '보았다.', '썼어요.', '불렀습니다.', '찍었다.'];
  let s = 12345;
  const pick = (a) => a[((s = (s * 1103515245 + 12345) % 2147483648) >>> 16) % a.length];
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(`${pick(subj)} ${pick(place)} ${pick(obj)} ${pick(verb)}`);
  return lines.join('\n') + '\n';
}

// Why llama.cpp cannot run here, or null when it can be tried: missing node_modules or a
// platform without a prebuilt binary in the pinned packages (only linux-x64 is installed).
export function unavailableReason() {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `no prebuilt llama.cpp installed for ${process.platform}-${process.arch} (only linux-x64)`;
  for (const p of ['node-llama-cpp', '@node-llama-cpp/linux-x64'])
    if (!existsSync(join(here, 'node_modules', p, 'package.json')))
      return `tests/export/llama/node_modules/${p} missing (make test-deps)`;
  return null;
}

// A CPU-only Llama over the prebuilt binary, or throws (NoBinaryFoundError when none works on
// this CPU). `threads` caps llama.cpp's thread pool.
export async function loadLlama({ threads = 2 } = {}) {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  return getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
    maxThreads: threads,
  });
}

// The prompt as llama.cpp tokenizes it for generation: BOS (the GGUF says add_bos_token) and the
// SentencePiece pieces.
export function promptTokens(model, text) {
  const ids = model.tokenize(text);
  if (model.tokens.bos != null && ids[0] !== model.tokens.bos) ids.unshift(model.tokens.bos);
  return ids;
}

// Greedy continuation of `tokens` on a fresh sequence: `n` token ids (EOS is not a stop, like
// `ktl generate --ignore-eos`: yieldEogToken keeps it going), each with llama.cpp's probability of that token and the top
// probability at that step (probabilities are only computed when `withProbs`).
export async function greedy(sequence, tokens, n, { withProbs = false } = {}) {
  const out = [];
  const it = withProbs
    ? sequence.evaluateWithMetadata(tokens, { probabilities: true }, { temperature: 0, yieldEogToken: true })
    : sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true });
  for await (const step of it) {
    if (withProbs) out.push({ token: step.token, probabilities: step.probabilities });
    else out.push({ token: step });
    if (out.length >= n) break;
  }
  return out;
}

// Teacher-forced scoring: feeds `ids` (another runtime's greedy output) after the prompt and
// returns, for each position, llama.cpp's own arg-max token, its probability and the probability
// it gives to ids[i] (softmax of the logits; temperature 0 does not change them).
export async function scoreTokens(sequence, promptIds, ids) {
  const it = sequence.evaluateWithMetadata(promptIds, { probabilities: true },
                                           { temperature: 0, yieldEogToken: true });
  const out = [];
  let r = await it.next();
  for (let i = 0; i < ids.length && !r.done; i++) {
    const [top, pTop] = r.value.probabilities.entries().next().value;
    out.push({ top, pTop, p: r.value.probabilities.get(ids[i]) ?? 0 });
    if (i + 1 < ids.length) r = await it.next(ids[i]);  // continue with the other runtime's token
  }
  await it.return();
  return out;
}
