#!/usr/bin/env python3
"""Collects eval-stream summaries into one table (markdown + long-form CSV).

Summaries are found by name: DIR/<variant>__<policy>_<S>+<W>[__seed<N>].nll.jsonl.summary.json
(as scripts/demo.sh and scripts/experiments/*.sh write them).

Caches run over fewer tokens than the others (recompute is usually run over a prefix: a forward per token) say so
in their column's head, and a second table compares every cache like for like over the first N tokens of the
stream, where N is the shortest run's length, from the per-token NLL files beside the summaries.

  stream_report.py EVAL_DIR --md OUT.md --csv OUT.csv [--paper-table3]
"""
import argparse
import collections
import csv
import json
import math
import pathlib
import re
import statistics

NAME = re.compile(r"^(?P<variant>[^_]+(?:-[^_]+)*)__(?P<policy>[a-z]+)_(?P<s>\d+)\+(?P<w>\d+)(?:__seed(?P<seed>\d+))?"
                  r"\.nll\.jsonl\.summary\.json$")

# The paper's Table 3 (160M models, Pythia-style, cache 0+1024 / 1+1023 / 2+1022 / 4+1020), for comparison.
PAPER_TABLE3 = {
    "none": {0: 27.87, 1: 18.49, 2: 18.05, 4: 18.05},
    "zero": {0: 29214, 1: 19.90, 2: 18.27, 4: 18.01},
    "token": {0: 1235, 1: 18.01, 2: 18.01, 4: 18.02},
}
LABEL = {"none": "vanilla", "token": "learnable sink token", "zero": "zero sink", "logit": "learned sink logit"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--md", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--paper-table3", action="store_true", help="add the paper's Table 3 beside ours")
    a = ap.parse_args()

    rows = []
    for p in sorted(pathlib.Path(a.eval_dir).glob("*.summary.json")):
        m = NAME.match(p.name)
        if not m:
            continue
        s = json.loads(p.read_text())
        rows.append(dict(variant=m["variant"], policy=m["policy"], sinks=int(m["s"]), window=int(m["w"]),
                         seed=int(m["seed"] or 0), ppl=s["ppl"], tokens=s["tokens"], tok_s=s["tokens_per_s"],
                         cache_mib=s["cache_bytes"] / 2**20, nll=p.with_name(p.name[:-len(".summary.json")])))
    if not rows:
        raise SystemExit(f"stream_report: no summaries in {a.eval_dir}")

    # Like for like: every run's perplexity over the first `common` tokens, which every run scored.
    common = min(r["tokens"] for r in rows)
    uneven = any(r["tokens"] != common for r in rows)
    for r in rows:
        r["ppl_common"] = prefix_ppl(r["nll"], common) if uneven else r["ppl"]

    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "sinks", "window", "seed", "ppl", "policy", "tokens", "tokens_per_s", "common_tokens",
                    "ppl_common"])
        for r in rows:
            w.writerow([r["variant"], r["sinks"], r["window"], r["seed"], f"{r['ppl']:.4f}", r["policy"], r["tokens"],
                        f"{r['tok_s']:.1f}", common, "" if r["ppl_common"] is None else f"{r['ppl_common']:.4f}"])

    cells, cells_common, col_tokens = collections.defaultdict(list), collections.defaultdict(list), {}
    for r in rows:
        key = (r["variant"], r["policy"], r["sinks"], r["window"])
        cells[key].append(r["ppl"])
        if r["ppl_common"] is not None:
            cells_common[key].append(r["ppl_common"])
        col_tokens.setdefault(key[1:], set()).add(r["tokens"])
    variants = sorted({k[0] for k in cells}, key=lambda v: list(LABEL).index(v) if v in LABEL else 99)
    columns = sorted({(k[1], k[2], k[3]) for k in cells}, key=lambda c: (c[0] != "streaming", c[0], c[1]))
    longest = max(r["tokens"] for r in rows)

    n_seeds = max(len(x) for x in cells.values())

    def fmt(values):
        if not values:
            return "—"
        mean = statistics.fmean(values)
        txt = f"{mean:.2f}" if mean < 1e4 else f"{mean:.3g}"
        if len(values) > 1:
            txt += f" ± {statistics.stdev(values):.2f}"
        if len(values) < n_seeds:  # a cell with fewer runs than the others says how many it has
            txt += f" ({len(values)} run{'s' if len(values) > 1 else ''})"
        return txt

    def name(c):
        p, s, w = c
        return f"{p} {s}+{w}" if p == "streaming" else f"{p} ({s}+{w})"

    def shorter(c):  # a column over fewer tokens than the longest run says how many
        n = sorted(col_tokens[c])
        return "" if n == [longest] else ", first " + "/".join(str(x) for x in n) + " tokens"

    def table(values, heads):
        lines = ["| " + " | ".join(["model"] + heads) + " |", "|" + " --- |" + " ---: |" * len(columns)]
        for v in variants:
            lines.append("| " + " | ".join([LABEL.get(v, v)] + [fmt(values.get((v,) + c, [])) for c in columns]) + " |")
        return "\n".join(lines) + "\n"

    per_cell = f"{n_seeds} run(s) per cell" + (", mean ± std" if n_seeds > 1 else "") + \
        ("; a cell with fewer says how many" if min(len(x) for x in cells.values()) < n_seeds else "")
    text = f"Perplexity on the held-out stream ({longest} tokens{', or fewer where a column says so' if uneven else ''}; " \
           f"{per_cell}). A cache S+W holds S + W tokens, the current one included: each token attends to S + W " \
           f"keys, itself among them (the paper's evaluation keeps S + W past tokens and adds the current one, so its " \
           f"4+1020 attends to 1025 keys; our S+W is its S+(W-1)).\n\n" + table(cells, [name(c) + shorter(c) for c in columns])
    if uneven:
        text += f"\nLike for like: the first {common} tokens of the same stream, which every cache scored " \
                f"(from the per-token NLL files).\n\n" + table(cells_common, [name(c) for c in columns])
    if a.paper_table3:
        text += "\nThe paper's Table 3 (160M models, 0+1024 / 1+1023 / 2+1022 / 4+1020):\n\n"
        text += "| model | 0+W | 1+(W−1) | 2+(W−2) | 4+(W−4) |\n| --- | ---: | ---: | ---: | ---: |\n"
        for v, vals in PAPER_TABLE3.items():
            text += f"| {LABEL[v]} | " + " | ".join(str(vals[s]) for s in (0, 1, 2, 4)) + " |\n"
    pathlib.Path(a.md).write_text(text)
    print(text)


def prefix_ppl(nll_path, n):
    """Perplexity over tokens 1..n-1 of a per-token NLL file (eval-stream's {"i", "token", "nll"} lines): the same
    mean as eval-stream's own over a stream of n tokens. None when the file is missing or shorter."""
    total, count = 0.0, 0
    try:
        with open(nll_path) as f:
            for line in f:
                r = json.loads(line)
                if r["i"] >= n:
                    break
                total += r["nll"]
                count += 1
    except FileNotFoundError:
        return None
    return math.exp(total / count) if count == n - 1 and count > 0 else None


if __name__ == "__main__":
    main()
