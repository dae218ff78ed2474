#!/usr/bin/env python3
"""The table of bench/llama_native.sh: the best figure of each configuration over the rounds,
ktl against llama.cpp, with the ratio. Usage: llama_native_table.py RESULTS.jsonl STREAMS"""
import json
import sys


def main():
    path, streams = sys.argv[1], int(sys.argv[2])
    best = {}

    def keep(key, value):
        if value is not None and value > best.get(key, 0):
            best[key] = value

    def keep_least(key, value):
        if value is not None and (key not in best or value < best[key]):
            best[key] = value

    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        who, dt = r["who"], r["dtype"]
        if who == "ktl":
            if r.get("phase") == "prefill":
                keep((who, dt, "prefill"), r["prefill_tok_s"])
                continue
            n = r["streams"]
            keep((who, dt, f"decode{n}"), r["decode_tok_s"] if n == 1 else r["aggregate_tok_s"])
            keep_least((who, dt, "rss_mb"), r["rss_kb"] / 1024)
        else:
            if r.get("phase") == "prefill":
                keep((who, dt, "prefill"), r.get("avg_ts"))
                continue
            keep((who, dt, f"decode{r['pl']}"), r["speed_tg"])
            keep_least((who, dt, "rss_mb"), r["rss_kb"] / 1024)

    rows = [("1 stream decode tok/s", "decode1"), (f"{streams} streams aggregate tok/s", f"decode{streams}"),
            ("prefill tok/s", "prefill"), ("peak RSS MB (decode run)", "rss_mb")]
    print(f"| figure | ktl fp32 | llama.cpp f32 | ratio | ktl int8 | llama.cpp q8_0 | ratio |")
    print("|---|---|---|---|---|---|---|")
    for label, key in rows:
        cells = []
        for kd, ld in (("fp32", "f32"), ("int8", "q8_0")):
            k, l = best.get(("ktl", kd, key)), best.get(("llama", ld, key))
            ratio = (l / k if key == "rss_mb" else k / l) if k and l else None
            fmt = lambda v: "—" if v is None else f"{v:,.0f}"
            cells += [fmt(k), fmt(l), "—" if ratio is None else f"{ratio:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("ratio: ktl / llama.cpp for speeds, llama.cpp / ktl for memory (above 1: ktl ahead)")


if __name__ == "__main__":
    main()
