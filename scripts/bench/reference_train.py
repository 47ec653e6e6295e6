#!/usr/bin/env python3
"""PyTorch eager reference for scripts/bench/train_throughput.sh: the same Llama-style model as streamsink's
(RMSNorm, RoPE rotate-half, SwiGLU, tied embeddings, GQA through SDPA enable_gqa), the same AdamW (fused=True,
decay on >=2-D weights only), the same global-norm clipping, batch, seq_len, precision (fp32, or bf16 autocast as
the trainer's `train.precision: bf16`) and threads, on the same llm.c-format shard (256 int32 header, uint16
tokens). Prints `pytorch_tok_s=... step_s=...` (warm-up excluded).

  reference_train.py --shard DIR/train_000000.bin --dim 64 --n-layers 2 --n-heads 4 --n-kv-heads 2 \
      --hidden-dim 192 --vocab 2048 --batch 8 --seq-len 64 --steps 60 --warmup 10 --threads 2
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # in float32 under autocast too, as the trainer's RMSNorm
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads):
        super().__init__()
        self.h, self.hkv, self.d = n_heads, n_kv_heads, dim // n_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * self.d, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * self.d, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.hkv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.hkv != self.h)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.dim)
        self.self_attn = Attention(a.dim, a.n_heads, a.n_kv_heads)
        self.post_attention_layernorm = RMSNorm(a.dim)
        self.mlp = MLP(a.dim, a.hidden_dim)

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.dim)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.n_layers))
        self.norm = RMSNorm(a.dim)
        d = a.dim // a.n_heads
        inv = a.rope_theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        ang = torch.arange(a.seq_len, dtype=torch.float64)[:, None] * inv
        ang = torch.cat((ang, ang), -1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        for n, p in self.named_parameters():
            if "norm" not in n:
                std = 0.02 / math.sqrt(2 * a.n_layers) if ("o_proj" in n or "down_proj" in n) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        h = self.embed_tokens(idx)
        for b in self.layers:
            h = b(h, cos, sin)
        logits = F.linear(self.norm(h), self.embed_tokens.weight)  # tied embeddings
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shard", required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--n-layers", type=int, required=True)
    ap.add_argument("--n-heads", type=int, required=True)
    ap.add_argument("--n-kv-heads", type=int, required=True)
    ap.add_argument("--hidden-dim", type=int, required=True)
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1337)

    raw = np.memmap(a.shard, dtype=np.int32, mode="r", shape=(256,))
    assert raw[0] in (20240520, 20240801), f"{a.shard}: bad magic {raw[0]}"
    n = int(raw[2])
    dt = np.uint16 if raw[0] == 20240520 else np.uint32
    tokens = np.memmap(a.shard, dtype=dt, mode="r", offset=256 * 4, shape=(n,))
    rng = np.random.default_rng(1337)

    model = Llama(a)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    L = a.seq_len
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()  # data sampling included, as in the trainer's step time
        starts = rng.integers(0, n - L - 1, size=a.batch)
        buf = torch.from_numpy(np.stack([tokens[s:s + L + 1].astype(np.int64) for s in starts]))
        x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_v = loss.item()
        times.append(time.perf_counter() - t0)
    t = sum(times[a.warmup:])
    nparams = sum(p.numel() for p in model.parameters())
    print(f"pytorch_tok_s={a.steps * a.batch * L / t:.1f} step_s={t / a.steps:.4f} params={nparams} "
          f"loss={loss_v:.3f} threads={torch.get_num_threads()} torch={torch.__version__} adamw=fused "
          f"precision={a.precision}")


if __name__ == "__main__":
    main()
