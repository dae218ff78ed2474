#!/usr/bin/env python3
"""The share of greedy continuations that loop, and what a repetition penalty does to it.

Starts `ktl serve` on a checkpoint, continues the first words of N texts greedily (64 tokens,
EOS ignored) at each repetition penalty given, and prints the share of continuations that loop:
some run of 1-8 words repeated at least 3 times back to back ("100%가 100%가 100%가"), a run of
1-12 characters repeated 6 times back to back ("000000"), or one word 3-gram seen 3 times.

  python3 bench/repetition_share.py --model var/runs/tiny/latest \\
      --texts ../shared/data/ko/nsmc-sentiment-dev.jsonl --n 100 --penalties 1.0,1.1,1.2
"""
import argparse, json, os, re
from collections import Counter

from ktl_serve import KtlServer

def loops(text):
    if re.search(r"(.{1,12}?)\1{5,}", text):  # "000000", "ㅋㅋㅋㅋㅋㅋ" or "좋다 좋다 ..." back to back
        return True
    w = text.split()
    for n in range(1, 9):
        for i in range(0, len(w) - 3 * n + 1):
            if w[i:i + n] == w[i + n:i + 2 * n] == w[i + 2 * n:i + 3 * n]:
                return True
    grams = Counter(tuple(w[i:i + 3]) for i in range(len(w) - 2))
    return bool(grams) and max(grams.values()) >= 3

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--words", type=int, default=3, help="words of each text used as the prompt")
    ap.add_argument("--penalties", default="1.0,1.1,1.2", help="repetition penalties (HF)")
    ap.add_argument("--frequency-penalties", default="", help="also these OpenAI frequency penalties")
    ap.add_argument("--ktl", default=os.path.join(os.path.dirname(__file__), "..", "build", "ktl"))
    a = ap.parse_args()
    prompts = []
    for line in open(a.texts, encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        text = json.loads(line)["text"] if line.startswith("{") else line
        words = text.split()
        if len(words) > a.words:
            prompts.append(" ".join(words[:a.words]))
        if len(prompts) == a.n:
            break
    with KtlServer(a.ktl, a.model) as srv:
        settings = [("repetition_penalty", float(x)) for x in a.penalties.split(",") if x]
        settings += [("frequency_penalty", float(x)) for x in a.frequency_penalties.split(",") if x]
        for key, pen in settings:
            texts = []
            for i in range(0, len(prompts), 16):
                r = srv.post("/v1/completions", {"prompt": prompts[i:i + 16], "max_tokens": 64,
                                                 "temperature": 0, "ignore_eos": True, key: pen})
                texts += [c["text"] for c in sorted(r["choices"], key=lambda c: c["index"])]
            share = sum(loops(t) for t in texts) / len(texts)
            print(f"{key} {pen}: {share:.0%} of {len(texts)} greedy continuations loop; "
                  f"e.g. {prompts[0]!r} -> {texts[0][:80]!r}")


if __name__ == "__main__":
    main()
