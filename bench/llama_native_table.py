#!/usr/bin/env python3
"""The table of bench/llama_native.sh: the best figure of each configuration over the rounds,
ktl against llama.cpp, with the ratio; then each decode figure's share of this machine's limits
when ktl_machine_limits ran (1 stream: bytes of weights read per token x tok/s over the best read
rate measured; N streams: 2 x parameters x tok/s over the int8 or fp32 peak).
Usage: llama_native_table.py RESULTS.jsonl STREAMS [native|avx2]"""
import json
import sys


def main():
    path, streams = sys.argv[1], int(sys.argv[2])
    flavor = sys.argv[3] if len(sys.argv) > 3 else "native"
    best = {}

    def keep(key, value):
        if value is not None and value > best.get(key, 0):
            best[key] = value

    def keep_least(key, value):
        if value is not None and (key not in best or value < best[key]):
            best[key] = value

    limits, sizes = [], {}
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        if r["who"] == "limits":
            limits.append(r)
            continue
        who, dt = r["who"], r["dtype"]
        if who == "ktl" and "weight_bytes_in_memory" in r:
            sizes[dt] = (r["weight_bytes_in_memory"], r["model_bytes"] / 4)  # bytes, parameters
        if who == "llama" and "model_size" in r:
            sizes[dt] = (r["model_size"], r.get("model_n_params"))
        if who == "ktl":
            if r.get("phase") == "prefill":
                keep((who, dt, "prefill"), r["prefill_tok_s"])
                continue
            n = r["streams"]
            keep((who, dt, f"decode{n}"), r["decode_tok_s"] if n == 1 else r["aggregate_tok_s"])
            keep_least((who, dt, "rss_mb"), r["rss_kb"] / 1024)
        else:
            if r.get("phase") == "prefill":
                if r.get("n_gen", 0) > 0:  # llama-bench's tg test: 1 stream, another tool
                    keep((who, dt, "decode1"), r.get("avg_ts"))
                else:
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
    if limits:
        print_shares(best, limits, sizes, streams, flavor)


def print_shares(best, runs, sizes, streams, flavor):
    # Each limit at its best over the measurements (before and after the rounds).
    limits = {}
    for r in runs:
        for k, v in r.items():
            if k != "who":
                limits[k] = max(limits.get(k, 0), v)
    reads = ", ".join(f"{r.get('read_gb_s_huge_pages', r.get('read_gb_s', 0)):.1f}" for r in runs)
    bw = max(v for k, v in limits.items() if k.startswith("read_gb_s"))
    if flavor == "avx2":  # both sides run AVX2 code: its peaks are the limit
        int8_peak, fp32_peak = limits.get("int8_avx2_gops"), limits.get("fp32_fma256_gflops")
    else:
        int8_peak = limits.get("int8_vnni512_gops") or limits.get("int8_avx2_gops")
        fp32_peak = limits.get("fp32_fma512_gflops") or limits.get("fp32_fma256_gflops")
    print()
    print(f"limits ({limits['threads']} threads; read rate per measurement: {reads} GB/s): "
          f"best read rate {bw:.1f} GB/s "
          f"(4 KB pages {limits.get('read_gb_s', 0):.1f}, huge pages "
          f"{limits.get('read_gb_s_huge_pages', 0):.1f}); int8 peak {int8_peak:.0f} GOP/s; "
          f"fp32 peak {fp32_peak:.0f} GFLOP/s")
    print("| who | dtype | weight MB read / token | 1 stream: share of read rate "
          f"| {streams} streams: share of compute peak |")
    print("|---|---|---|---|---|")
    for who, dts in (("ktl", ("fp32", "int8")), ("llama", ("f32", "q8_0"))):
        for dt in dts:
            if dt not in sizes:
                continue
            nbytes, params = sizes[dt]
            params = params or sizes.get("fp32", (0, 0))[1]
            one, many = best.get((who, dt, "decode1")), best.get((who, dt, f"decode{streams}"))
            peak = int8_peak if dt in ("int8", "q8_0") else fp32_peak
            s1 = f"{one * nbytes / 1e9 / bw:.0%}" if one else "—"
            sn = f"{many * 2 * params / 1e9 / peak:.0%}" if many and params and peak else "—"
            print(f"| {who} | {dt} | {nbytes / 1e6:,.0f} | {s1} | {sn} |")


if __name__ == "__main__":
    main()
