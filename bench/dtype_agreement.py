#!/usr/bin/env python3
"""What serving a checkpoint in bf16 or int8 instead of fp32 costs and gains (issue #24).

Prints one table, each row measured by ktl itself on the same checkpoint:
  - held-out bits per character: `ktl eval --dtype D` (the engine's forward on the split's
    fixed windows; needs --data, a directory with <split>.bin);
  - greedy agreement with fp32: N prompts from a text file (the start of every k-th line),
    --max-tokens new tokens each, greedy, EOS ignored, through `ktl serve --dtype D`, one
    request at a time (no batching, so each dtype's numbers depend on its weights alone); the
    share of generated tokens equal to fp32's at the same position, the mean number of leading
    tokens before the first difference, and the share of whole outputs identical;
  - speed: `ktl bench --dtype D --streams 1,16` decode tok/s (1 stream; 16 streams aggregate).

  nice -n 10 python3 bench/dtype_agreement.py --model /tmp/m23/base/final \
      --data /tmp/m23/data --prompts /tmp/m23/data/test.txt --threads 1
"""
import argparse, json, os, re, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
from ktl_serve import KtlServer

DTYPES = ["fp32", "bf16", "int8"]


def pick_prompts(path, n, min_chars=16):
    """The first half (at most 48 characters) of n lines spread evenly over the file."""
    lines = [l.strip() for l in open(path, encoding="utf-8")]
    lines = [l for l in lines if len(l) >= min_chars]
    step = max(1, len(lines) // n)
    return [l[:min(48, len(l) // 2)] for l in lines[::step][:n]]


def greedy_tokens(srv, prompts, max_tokens):
    out = []
    for p in prompts:
        r = srv.post("/v1/completions", {"prompt": p, "max_tokens": max_tokens, "temperature": 0,
                                           "ignore_eos": True, "logprobs": 0})
        out.append(r["choices"][0]["logprobs"]["tokens"])
    return out


def agreement(ref, other):
    same = total = lead = whole = 0
    for r, o in zip(ref, other):
        same += sum(a == b for a, b in zip(r, o))
        total += max(len(r), len(o))
        k = 0
        while k < min(len(r), len(o)) and r[k] == o[k]:
            k += 1
        lead += k
        whole += r == o
    return same / total, lead / len(ref), whole / len(ref)


def eval_bpc(a, dtype):
    out = subprocess.run([a.ktl, "eval", "--model", a.model, "--data", a.data, "--split", a.split,
                          "--dtype", dtype, "--num-threads", str(a.threads), "--max-batches",
                          str(a.max_batches)], check=True, capture_output=True, text=True).stdout
    bpc = float(re.search(r"bits per character: ([0-9.]+)", out).group(1))
    tokens = int(re.search(r"; (\d+) tokens", out).group(1))
    return bpc, tokens


def bench(a, dtype):
    out = subprocess.run([a.ktl, "bench", "--model", a.model, "--dtype", dtype, "--streams", "1,16",
                          "--prompt-tokens", "32", "--gen-tokens", "64", "--threads",
                          str(a.threads), "--json"], check=True, capture_output=True,
                         text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    by = {r["streams"]: r for r in rows}
    return by[1]["decode_tok_s"], by[16]["aggregate_tok_s"], rows[0].get("cpu", "?")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="UTF-8 text, one document per line")
    ap.add_argument("--data", help="token shard directory for bits per character")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-batches", type=int, default=10, help="ktl eval: batches of 8 x 256")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-bench", action="store_true", help="skip the speed columns")
    ap.add_argument("--ktl", default=os.path.join(os.path.dirname(__file__), "..", "build", "ktl"))
    a = ap.parse_args()

    prompts = pick_prompts(a.prompts, a.n)
    gen, bpc, speed, cpu = {}, {}, {}, "?"
    for d in DTYPES:
        with KtlServer(a.ktl, a.model, ["--dtype", d, "--threads", str(a.threads),
                                        "--kv-cache-mb", "64"]) as srv:
            gen[d] = greedy_tokens(srv, prompts, a.max_tokens)
        if a.data:
            bpc[d] = eval_bpc(a, d)
        if not a.no_bench:
            *speed[d], cpu = bench(a, d)
    print(f"model {a.model}; {len(prompts)} prompts x {a.max_tokens} greedy tokens; "
          f"{a.threads} thread(s); CPU {cpu}")
    if a.data:
        print(f"bits per character: {a.split} split, {bpc['fp32'][1]} tokens")
    print("| dtype | bits/char | vs fp32 | tokens = fp32 | leading tokens = fp32 | outputs = fp32 "
          "| 1 stream tok/s | 16 streams tok/s |")
    print("|---|---|---|---|---|---|---|---|")
    for d in DTYPES:
        same, lead, whole = agreement(gen["fp32"], gen[d])
        b = f"{bpc[d][0]:.4f}" if d in bpc else "-"
        rel = f"{100 * (bpc[d][0] / bpc['fp32'][0] - 1):+.2f}%" if d in bpc else "-"
        s1, s16 = (f"{speed[d][0]:.1f}", f"{speed[d][1]:.1f}") if d in speed else ("-", "-")
        print(f"| {d} | {b} | {rel} | {100 * same:.1f}% | {lead:.1f} of {a.max_tokens} "
              f"| {100 * whole:.0f}% | {s1} | {s16} |")


if __name__ == "__main__":
    main()
