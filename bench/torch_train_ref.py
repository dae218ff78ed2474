#!/usr/bin/env python3
"""PyTorch-from-Python twin of `ktl bench-train`: the same LLaMA-style model (RMSNorm, RoPE, GQA,
SwiGLU) built from a ktl model YAML, AdamW, random tokens, the same FLOP count and MFU.

  python3 bench/torch_train_ref.py --model-config configs/model_small.yaml --batch-size 16 \
      --seq-len 1024 --device cuda --bf16 true [--sdpa] [--compile] [--peak-tflops 989]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def load_yaml(path):
    c = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            c[k] = v
    return c


class Block(nn.Module):
    def __init__(s, d, h, kv, f, eps, sdpa):
        super().__init__()
        s.h, s.kv, s.hd, s.sdpa = h, kv, d // h, sdpa
        s.n1, s.n2 = nn.RMSNorm(d, eps=eps), nn.RMSNorm(d, eps=eps)
        s.q = nn.Linear(d, h * s.hd, bias=False)
        s.k = nn.Linear(d, kv * s.hd, bias=False)
        s.v = nn.Linear(d, kv * s.hd, bias=False)
        s.o = nn.Linear(h * s.hd, d, bias=False)
        s.gate = nn.Linear(d, f, bias=False)
        s.up = nn.Linear(d, f, bias=False)
        s.down = nn.Linear(f, d, bias=False)

    def forward(s, x, cos, sin):
        B, T, _ = x.shape
        y = s.n1(x)
        q = s.q(y).view(B, T, s.h, s.hd)
        k = s.k(y).view(B, T, s.kv, s.hd)
        v = s.v(y).view(B, T, s.kv, s.hd)

        def rope(t):
            a, b = t.chunk(2, -1)
            return t * cos[:, None] + torch.cat([-b, a], -1) * sin[:, None]

        q, k = rope(q), rope(k)
        rep = s.h // s.kv
        k = k.repeat_interleave(rep, 2)
        v = v.repeat_interleave(rep, 2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, Dh]
        if s.sdpa:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            sc = (q @ k.transpose(-2, -1)) / math.sqrt(s.hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            a = torch.softmax(sc.masked_fill(mask, float("-inf")).float(), -1).to(q.dtype) @ v
        x = x + s.o(a.transpose(1, 2).reshape(B, T, -1))
        y = s.n2(x)
        return x + s.down(F.silu(s.gate(y)) * s.up(y))


class Model(nn.Module):
    def __init__(s, c, sdpa):
        super().__init__()
        d, h = int(c["hidden_size"]), int(c["num_heads"])
        s.hd, s.theta = d // h, float(c.get("rope_theta", 10000))
        s.emb = nn.Embedding(int(c["vocab_size"]), d)
        s.blocks = nn.ModuleList(
            Block(d, h, int(c["num_kv_heads"]), int(c["intermediate_size"]),
                  float(c.get("rms_norm_eps", 1e-5)), sdpa) for _ in range(int(c["num_layers"])))
        s.norm = nn.RMSNorm(d, eps=float(c.get("rms_norm_eps", 1e-5)))
        s.head = nn.Linear(d, int(c["vocab_size"]), bias=False)
        if c.get("tie_word_embeddings", "true") == "true":
            s.head.weight = s.emb.weight

    def forward(s, tok):
        T = tok.shape[1]
        inv = s.theta ** (-torch.arange(0, s.hd, 2, device=tok.device, dtype=torch.float64) / s.hd)
        fr = torch.arange(T, device=tok.device, dtype=torch.float64)[:, None] * inv[None]
        emb = torch.cat([fr, fr], -1)
        cos, sin = emb.cos().float(), emb.sin().float()
        x = s.emb(tok)
        for b in s.blocks:
            x = b(x, cos.to(x.dtype), sin.to(x.dtype))
        return s.head(s.norm(x))


def flops_per_token(c, ctx):  # the same count as ktl's ModelConfig::flops_per_token
    d, f, L = int(c["hidden_size"]), int(c["intermediate_size"]), int(c["num_layers"])
    h, kv, V = int(c["num_heads"]), int(c["num_kv_heads"]), int(c["vocab_size"])
    hd = d // h
    mm = L * (d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f) + V * d
    return 2.0 * mm + 2.0 * L * 2.0 * h * hd * ctx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", default="true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--sdpa", action="store_true", help="fused attention (as ktl on LibTorch 2.x GPU)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0)
    a = p.parse_args()
    c = load_yaml(a.model_config)
    dev = torch.device(a.device)
    torch.manual_seed(1)
    m = Model(c, a.sdpa).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            **({"fused": True} if dev.type == "cuda" else {}))
    step_fn = torch.compile(m) if a.compile else m
    V = int(c["vocab_size"])
    tok = torch.randint(0, V, (a.batch_size, a.seq_len + 1), device=dev)
    bf16 = a.bf16 == "true"

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = step_fn(tok[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, V), tok[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # synchronous, as ktl's step

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    s = time.perf_counter() - t0
    tps = a.steps * a.batch_size * a.seq_len / s
    gflops = 3.0 * flops_per_token(c, a.seq_len) * tps / 1e9
    peak = a.peak_tflops * 1e3
    if peak <= 0:
        n = 1024 if dev.type == "cpu" else 8192
        dt = torch.bfloat16 if bf16 else torch.float32
        x, y = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
        (x @ y).sum().item()
        best = 1e30
        for _ in range(5):
            t = time.perf_counter()
            (x @ y)[0, 0].item()
            best = min(best, time.perf_counter() - t)
        peak = 2.0 * n ** 3 / best / 1e9
    print(f"pytorch {torch.__version__} | {dev} | {'bf16' if bf16 else 'fp32'} | batch "
          f"{a.batch_size}x{a.seq_len} | sdpa {a.sdpa} | {tps:.0f} tok/s | {gflops:.1f} GFLOP/s | "
          f"MFU {100 * gflops / peak:.1f}% of {peak:.0f} GFLOP/s | {s / a.steps:.3f} s/step")


if __name__ == "__main__":
    main()
