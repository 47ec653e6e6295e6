#!/usr/bin/env python3
"""Perplexity against position over a long stream, one line per cache (the paper's Figure 3).

  plot_stream.py OUT.png --title T LABEL=FILE.nll.jsonl [LABEL=FILE.nll.jsonl ...] [--smooth N] [--train-len L]
"""
import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(path):
    pos, nll = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            pos.append(r["i"])
            nll.append(r["nll"])
    return np.array(pos), np.array(nll, dtype=np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("series", nargs="+", help="LABEL=FILE")
    ap.add_argument("--title", default="")
    ap.add_argument("--smooth", type=int, default=512, help="moving-average window (tokens)")
    ap.add_argument("--train-len", type=int, default=0, help="mark the training context length")
    a = ap.parse_args()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = []
    for spec in a.series:
        label, path = spec.split("=", 1)
        series.append((label, *load(path)))
    # The legend's perplexities compare like with like: over the tokens every curve has (a recompute baseline is
    # often run over a prefix of the stream only), and the legend says so when the curves differ in length.
    common = min(len(nll) for _, _, nll in series)
    styles = ["-", "--", "-.", ":"]  # curves that coincide (a cache that keeps what another does) stay visible
    for n_series, (label, pos, nll) in enumerate(series):
        # A trailing moving average over the last `smooth` tokens, over fewer at the stream's start (the first
        # point is token 1 alone): every position is drawn, so the curves show what happens around the training
        # length too, which a full window would hide behind its first `smooth` tokens.
        k = max(1, a.smooth)
        c = np.concatenate([[0.0], np.cumsum(nll)])
        n = np.arange(1, len(nll) + 1)
        width = np.minimum(n, k)
        smooth = (c[n] - c[n - width]) / width
        ppl = math.exp(nll[:common].mean())
        ax.plot(pos, np.exp(smooth), label=f"{label} (ppl {ppl:.2f})", linewidth=1.2,
                linestyle=styles[n_series % len(styles)])
    longest = max(int(pos[-1]) for _, pos, _ in series)
    log_x = a.train_len and 20 * a.train_len < longest  # a training length lost in a linear axis: log positions
    if log_x:
        ax.set_xscale("log")
    if a.train_len:
        ax.axvline(a.train_len, color="grey", linestyle=":", linewidth=1)
        ax.text(a.train_len, ax.get_ylim()[1], " training length", va="top", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("position in the stream (tokens" + (", log scale)" if log_x else ")"))
    ax.set_ylabel(f"perplexity (trailing {a.smooth}-token mean)")
    ax.set_title(a.title)
    ax.grid(True, which="both", alpha=0.3)
    same = all(len(nll) == common for _, _, nll in series)
    ax.legend(fontsize=8, title=None if same else f"ppl over the first {common:,} tokens (common to every curve)",
              title_fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
