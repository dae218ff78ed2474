// Does llama.cpp tokenize like ktl? Tokenizes each line of TEXT with llama.cpp (node-llama-cpp's
// prebuilt binary, tests/export/llama/node_modules) from an exported GGUF, compares the ids with
// `ktl tokenize --file TEXT` (one line of ids per text line), prints the differing lines (first 3)
// and a JSON summary. No BOS on either side.
//
//   ktl export --model CKPT --format gguf --out m.gguf
//   ktl tokenize --model CKPT --file texts.txt > ids.txt
//   node bench/gguf_tokenizer_parity.mjs m.gguf texts.txt ids.txt
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { loadLlama, unavailableReason } = await import(
  join(here, '..', 'tests', 'export', 'llama', 'llama_peer.mjs'));
const [gguf, textFile, idsFile] = process.argv.slice(2);
if (!idsFile) {
  console.error('usage: node bench/gguf_tokenizer_parity.mjs MODEL.gguf TEXTS.txt IDS.txt');
  process.exit(2);
}
const why = unavailableReason();
if (why) {
  console.error(why);
  process.exit(77);
}
const llama = await loadLlama({ threads: 1 });
const model = await llama.loadModel({ modelPath: gguf });
const lines = readFileSync(textFile, 'utf8').split('\n').filter((l) => l.length);
const ids = readFileSync(idsFile, 'utf8').split('\n').filter((l) => l.length)
  .map((l) => l.trim().split(/\s+/).map(Number));
if (ids.length !== lines.length) {
  console.error(`${textFile} has ${lines.length} texts, ${idsFile} ${ids.length} id lines`);
  process.exit(2);
}
let same = 0, tokKtl = 0, tokLlama = 0, shown = 0;
for (let i = 0; i < lines.length; i++) {
  const got = Array.from(model.tokenize(lines[i]));
  tokKtl += ids[i].length;
  tokLlama += got.length;
  if (got.length === ids[i].length && got.every((v, j) => v === ids[i][j])) same++;
  else if (shown++ < 3)
    console.log(`differs: ${lines[i]}\n  ktl   ${ids[i].join(' ')}\n  llama ${got.join(' ')}`);
}
console.log(JSON.stringify({ gguf, texts: lines.length, identical: same,
  share: same / lines.length, tokens_ktl: tokKtl, tokens_llama: tokLlama }));
process.exit(0);
