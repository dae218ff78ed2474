#!/usr/bin/env python3
"""How far bf16 and int8 weights move the log-probabilities that /v1/completions reports.

Starts `ktl serve` once per dtype on one checkpoint, scores the same texts with echo + logprobs
(max_tokens 0, as evaluation harnesses do) and prints, against fp32, the per-token absolute
difference (mean, p99, max) and the difference of each text's summed log-likelihood.

  python3 bench/logprob_dtypes.py --model var/runs/tiny/latest \
      --texts ../shared/data/ko/nsmc-sentiment-dev.jsonl --n 100
"""
import argparse, json, os

from ktl_serve import KtlServer

def score(srv, texts):
    out = []
    for i in range(0, len(texts), 16):
        r = srv.post("/v1/completions", {"prompt": texts[i:i + 16], "echo": True, "logprobs": 0,
                                           "max_tokens": 0})
        for c in sorted(r["choices"], key=lambda c: c["index"]):
            out.append(c["logprobs"]["token_logprobs"][1:])
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True, help="JSONL with a 'text' field, or plain lines")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--ktl", default=os.path.join(os.path.dirname(__file__), "..", "build", "ktl"))
    a = ap.parse_args()
    texts = []
    for line in open(a.texts, encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        texts.append(json.loads(line)["text"] if line.startswith("{") else line)
        if len(texts) == a.n:
            break
    scores = {}
    for dtype in ["fp32", "bf16", "int8"]:
        with KtlServer(a.ktl, a.model, ["--dtype", dtype]) as srv:
            scores[dtype] = score(srv, texts)
    ref = scores["fp32"]
    for dtype in ["bf16", "int8"]:
        d = sorted(abs(x - y) for r, s in zip(ref, scores[dtype]) for x, y in zip(r, s))
        sums = [abs(sum(r) - sum(s)) for r, s in zip(ref, scores[dtype])]
        print(f"{dtype} vs fp32 over {len(d)} tokens of {len(texts)} texts: per token mean "
              f"{sum(d) / len(d):.4f} p99 {d[int(0.99 * (len(d) - 1))]:.4f} max {d[-1]:.4f} nats; "
              f"per text sum: mean {sum(sums) / len(sums):.4f} max {max(sums):.4f} nats")

if __name__ == "__main__":
    main()
