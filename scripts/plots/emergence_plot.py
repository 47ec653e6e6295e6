#!/usr/bin/env python3
"""The attention-sink emergence study's report (scripts/experiments/emergence.sh): reads each run's metrics.jsonl
(the trainer's sink metrics at every evaluation), writes them in long form (CSV, one row per run x evaluation x
layer), a Markdown file with each run's set-up, final metrics and verdict, a plot of the curves, and prints the
summary.

A run has a sink when, at its last evaluation, both hold:
  - attention: some layer gives the first position more than SHARE_RATIO x the share a uniform causal attention
    would give it (the mean over the scored queries t = 1..T-1 of 1/(t+1));
  - function: the validation loss past W with window attention (0+W) exceeds the loss with 4 sinks + (W-4) window
    by more than LOSS_GAP (relative), i.e. evicting the first tokens hurts, and by more than twice the standard
    error of that paired difference (metrics.jsonl's sink_gap_se; runs logged before it was recorded are judged
    on the relative bar alone).

  emergence_plot.py NAME=RUN_DIR [NAME=RUN_DIR ...] --csv OUT.csv --md OUT.md --png OUT.png
                    [--share-ratio 5] [--loss-gap 0.01] [--command CMD] [--conf CONF]
"""
import argparse
import csv
import json
import os
import platform
import sys
import time


def load_config(path):
    """The resolved run config (config.yaml as the trainer writes it: two levels, `section:` then `  key: value`)."""
    out, section = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, _, value = line.strip().partition(":")
            if not line.startswith(" "):
                section = key
            else:
                value = value.strip().strip('"')
                out[f"{section}.{key}"] = value
    return out


def num(x, kind=float):
    try:
        return kind(x)
    except (TypeError, ValueError):
        return None


def uniform_first_share(T, first):
    """Mean over queries t = first..T-1 of the share uniform causal attention gives positions [0, first)."""
    qs = range(first, T)
    return sum(first / (t + 1) for t in qs) / max(1, len(qs))


def load_run(name, d):
    for f in ("metrics.jsonl", "config.yaml"):
        if not os.path.isfile(os.path.join(d, f)):
            sys.exit(f"emergence_plot.py: run {name}: no {f} in {d}")
    cfg = load_config(os.path.join(d, "config.yaml"))
    evals, train = [], []
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"emergence_plot.py: {d}/metrics.jsonl line {i}: {e}")
            if "val_loss" in j and "sink_first_share" in j:
                evals.append(j)
            elif "loss" in j and "tokens_seen" in j:
                train.append(j)
    info = {}
    p = os.path.join(d, "emergence.json")
    if os.path.isfile(p):
        info = json.load(open(p))
    params, device, threads = None, cfg.get("train.device", "?"), cfg.get("train.threads", "?")
    p = os.path.join(d, "train.log")
    if os.path.isfile(p):
        for line in open(p, errors="replace"):
            if line.startswith("# model: "):
                params = line.split()[2]  # "4.03M"
            elif line.startswith("# run: "):
                for part in line.split("|"):
                    part = part.strip()
                    if part.startswith("device "):
                        device = part[len("device "):]
                    elif part.endswith(" threads"):
                        threads = part.split()[0]
    seq = num(cfg.get("train.seq_len"), int) or num(cfg.get("model.context_length"), int) or 0
    batch = num(cfg.get("train.batch_size"), int) or 0
    accum = num(cfg.get("train.grad_accum"), int) or 1
    per_step = (train[-1]["tokens_seen"] // train[-1]["step"]) if train else batch * seq * accum
    sink = cfg.get("model.sink", "none")
    prefix = (num(cfg.get("model.sink_tokens"), int) or 1) if sink == "token" else 0  # sink tokens per sample
    first = max(1, prefix)
    return {"name": name, "dir": d, "cfg": cfg, "sink": sink, "evals": evals, "train": train, "info": info, "params": params,
            "device": device, "threads": threads, "seq": seq, "per_step": per_step,
            "uniform": uniform_first_share(seq, first) if seq > first else float("nan"),
            "planned_steps": num(cfg.get("train.steps"), int)}


def fmt_tokens(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def judge(run, e, ratio, gap):
    shares = e["sink_first_share"]
    best = max(range(len(shares)), key=lambda i: shares[i])
    diff = e["window_loss"] - e["sink4_loss"]
    rel = diff / e["sink4_loss"]
    se = e.get("sink_gap_se")  # absent in runs logged before the trainer recorded it; null for one sequence
    att = shares[best] > ratio * run["uniform"]
    fn = rel > gap and (se is None or diff > 2 * se)
    return {"best_layer": best, "best_share": shares[best], "x_uniform": shares[best] / run["uniform"], "rel_gap": rel,
            "gap_se_rel": None if se is None else se / e["sink4_loss"], "tokens": e.get("sink_scored_tokens"),
            "attention": att, "function": fn, "sink": att and fn}


def fmt_gap(v):
    """The relative gap, with its standard error where the run logged one: '+1.23% ± 0.40%'."""
    text = f"{100 * v['rel_gap']:+.2f}%"
    return text if v["gap_se_rel"] is None else text + f" ± {100 * v['gap_se_rel']:.2f}%"


def verdict_text(v):
    if v["sink"]:
        return "sink"
    if v["attention"]:
        return "attention only"
    if v["function"]:
        return "loss gap only"
    return "no sink"


def explain(run, v, ratio, gap):
    a = (f"layer {v['best_layer']} gives the first position {100 * v['best_share']:.1f}% of attention, "
         f"{v['x_uniform']:.1f}x its uniform share ({100 * run['uniform']:.1f}%; bar {ratio:g}x)")
    f = (f"window attention's loss past W is {fmt_gap(v)} vs 4 sinks + window (bar +{100 * gap:g}%"
         + (", and 2 standard errors" if v["gap_se_rel"] is not None else "")
         + (f"; {v['tokens']:,} scored tokens" if v["tokens"] else "") + ")")
    return a + "; " + f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--png", required=True)
    ap.add_argument("--share-ratio", type=float, default=5.0, help="attention bar, x the uniform first-position share")
    ap.add_argument("--loss-gap", type=float, default=0.01, help="function bar: (window - 4 sinks) / 4 sinks")
    ap.add_argument("--command", default="", help="the command that made the runs, for the Markdown")
    ap.add_argument("--conf", default="", help="the study's conf file, quoted in the Markdown")
    ap.add_argument("--title", default="When do attention sinks emerge? (`scripts/experiments/emergence.sh`)",
                    help="the Markdown's heading")
    a = ap.parse_args()

    runs = []
    for spec in a.runs:
        if "=" not in spec:
            sys.exit(f"emergence_plot.py: '{spec}' is not NAME=RUN_DIR")
        name, d = spec.split("=", 1)
        runs.append(load_run(name, d))

    # ---- CSV: one row per run x evaluation x layer ----
    os.makedirs(os.path.dirname(os.path.abspath(a.csv)), exist_ok=True)
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["run", "step", "tokens", "layer", "first_share", "window_loss", "sink4_loss", "sink_window",
                    "val_loss", "sink_gap_se"])
        for r in runs:
            for e in r["evals"]:
                for layer, s in enumerate(e["sink_first_share"]):
                    w.writerow([r["name"], e["step"], e["step"] * r["per_step"], layer, f"{s:.6g}",
                                f"{e['window_loss']:.6g}", f"{e['sink4_loss']:.6g}", e["sink_window"],
                                f"{e['val_loss']:.6g}",
                                f"{e['sink_gap_se']:.6g}" if e.get("sink_gap_se") is not None else ""])

    # ---- verdicts ----
    for r in runs:
        r["judged"] = [judge(r, e, a.share_ratio, a.loss_gap) for e in r["evals"]]
        r["final"] = r["judged"][-1] if r["judged"] else None
        first = next((i for i, v in enumerate(r["judged"]) if v["sink"]), None)
        r["first_sink"] = None if first is None else r["evals"][first]["step"] * r["per_step"]
        r["peak_x"] = max((v["x_uniform"] for v in r["judged"]), default=float("nan"))
        r["peak_gap"] = max((v["rel_gap"] for v in r["judged"]), default=float("nan"))

    # ---- Markdown ----
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    T_list = sorted({r["seq"] for r in runs})
    uni = ", ".join(f"{100 * uniform_first_share(T, 1):.1f}% at T = {T}" for T in T_list)
    L = []
    L.append(f"# {a.title}\n")
    variants = ("Every run is vanilla (`sink: none`)" if all(r["sink"] == "none" for r in runs) else
                "Sink variants: " + ", ".join(f"{r['name']} `sink: {r['sink']}`" for r in runs) +
                " (for `token` the first position is the sink token)")
    L.append(f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{a.command or 'emergence_plot.py'}` on "
             f"{cpu}, {os.cpu_count()} cores (training device and threads per run below). {variants}; the trainer "
             "logs its sink metrics at each evaluation (`train/sink_metrics.h`), on the first `train.sink_sequences` "
             f"(default 64) validation sequences rank 0 scores (runs logged before session 9: on its first 4). Curves: `{os.path.basename(a.png)}`; every evaluation and layer: "
             f"`{os.path.basename(a.csv)}`.\n")
    L.append("## The criterion\n")
    L.append(f"A run **has a sink** when, at its last evaluation, both of these hold (computed by "
             f"`scripts/plots/emergence_plot.py` from `metrics.jsonl`; \"sink first at\" is the first evaluation "
             f"where both held):\n")
    L.append(f"1. **attention**: some layer gives the first position more than **{a.share_ratio:g}x** the share a "
             f"uniform causal attention would (the mean over the scored queries t = 1..T-1 of 1/(t+1): {uni}). "
             f"That is the bar `scripts/plots/sink_summary.py` uses for attention maps; the sinks of trained LLMs "
             f"take 50% and more.")
    L.append(f"2. **function**: the validation loss past W with window attention (0+W) exceeds the loss with 4 sinks "
             f"+ (W-4) window by more than **{100 * a.loss_gap:g}%**, i.e. evicting the first tokens hurts, and by more "
             f"than twice its standard error (from the per-sequence differences; shown as ± after the gap). Both "
             f"losses are scored on the same tokens, so the gap is paired: without a sink they agree to ~0.1% "
             f"(`docs/results.md`, demo run 2: 4.073 vs 4.076), while the paper's vanilla 160M model loses ~15% "
             f"(perplexity 27.87 vs 18.05, Table 3).\n")
    L.append("Attention without the loss gap means the first position is favoured but not needed; the paper's "
             "effect (window attention collapsing) needs both.\n")
    L.append("## Runs\n")
    L.append("| run | config | tokenizer | params | dim x layers, heads/kv, T | lr | weight decay | steps x tokens "
             "= tokens | wall (train + evals) | training tokens/s | device, threads |")
    L.append("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in runs:
        c, info = r["cfg"], r["info"]
        last_step = r["train"][-1]["step"] if r["train"] else (r["evals"][-1]["step"] if r["evals"] else 0)
        wall = info.get("train_wall_s") or max((t.get("elapsed_s", 0) for t in r["train"]), default=0)
        toks = last_step * r["per_step"]
        rates = sorted(t["tok_s"] for t in r["train"] if t.get("tok_s"))
        tok_s = rates[len(rates) // 2] if rates else 0  # the median logging window
        stopped = ""
        if r["planned_steps"] and last_step < r["planned_steps"]:
            stopped = f" (of {r['planned_steps']} planned: stopped early)"
        tok = info.get("tokenizer", "?")
        vocab = c.get("model.vocab_size", "?")
        cfgname = info.get("config", "?")
        L.append(f"| {r['name']} | `{cfgname}` | {tok} ({vocab}) | {r['params'] or '?'} | {c.get('model.dim')} x "
                 f"{c.get('model.n_layers')}, {c.get('model.n_heads')}/{c.get('model.n_kv_heads')}, {r['seq']} | "
                 f"{c.get('train.lr')} | {c.get('train.weight_decay')} | {last_step}{stopped} x {r['per_step']} = "
                 f"{fmt_tokens(toks)} | {wall:.0f} s | {tok_s:,.0f} | {r['device']}, "
                 f"{r['threads']} |")
    sets = [(r["name"], r["info"].get("sets", "")) for r in runs if r["info"].get("sets")]
    if sets:
        L.append("")
        L.append("Per-run overrides: " + "; ".join(f"{n}: `{s}`" for n, s in sets) + ".")
    L.append("")
    L.append("## Final metrics (last evaluation)\n")
    L.append("| run | tokens | val loss | first-position share per layer | max / uniform | window loss | 4-sink loss "
             "| gap | verdict | sink first at | peak max/uniform, peak gap |")
    L.append("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for r in runs:
        if not r["evals"]:
            L.append(f"| {r['name']} | - | - | - | - | - | - | - | no evaluation | - | - |")
            continue
        e, v = r["evals"][-1], r["final"]
        shares = " ".join(f"{100 * s:.1f}%" for s in e["sink_first_share"])
        first = f"{fmt_tokens(r['first_sink'])} tokens" if r["first_sink"] is not None else "never"
        L.append(f"| {r['name']} | {fmt_tokens(e['step'] * r['per_step'])} | {e['val_loss']:.4f} | {shares} | "
                 f"{v['x_uniform']:.1f}x (layer {v['best_layer']}) | {e['window_loss']:.4f} | {e['sink4_loss']:.4f} | "
                 f"{fmt_gap(v)} | **{verdict_text(v)}** | {first} | "
                 f"{r['peak_x']:.1f}x, {100 * r['peak_gap']:+.2f}% |")
    L.append("")
    L.append("## Verdicts\n")
    for r in runs:
        if not r["evals"]:
            L.append(f"- **{r['name']}**: no verdict: the run has no evaluation in {r['dir']}/metrics.jsonl.")
            continue
        v = r["final"]
        e = r["evals"][-1]
        L.append(f"- **{r['name']}**: {verdict_text(v)} after "
                 f"{fmt_tokens(e['step'] * r['per_step'])} tokens: {explain(r, v, a.share_ratio, a.loss_gap)}.")
    if a.conf and os.path.isfile(a.conf):
        L.append("\n## The study's conf\n")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        rel = os.path.relpath(a.conf, root)
        L.append(f"`{a.conf if rel.startswith('..') else rel}`:\n")
        L.append("```sh\n" + open(a.conf).read().rstrip() + "\n```")
    os.makedirs(os.path.dirname(os.path.abspath(a.md)), exist_ok=True)
    with open(a.md, "w") as f:
        f.write("\n".join(L) + "\n")

    # ---- plot ----
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(17, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(runs):
        if not r["evals"]:
            continue
        col = colors[i % len(colors)]
        x = [e["step"] * r["per_step"] for e in r["evals"]]
        ax[0].plot(x, [100 * v["best_share"] for v in r["judged"]], "o-", ms=3, color=col, label=r["name"])
        yerr = [200 * v["gap_se_rel"] if v["gap_se_rel"] is not None else 0 for v in r["judged"]]
        ax[1].errorbar(x, [100 * v["rel_gap"] for v in r["judged"]], yerr=yerr if any(yerr) else None, fmt="o-", ms=3,
                       color=col, capsize=2, label=r["name"])
        ax[2].plot(x, [e["val_loss"] for e in r["evals"]], "o-", ms=3, color=col, label=r["name"])
    for k, T in enumerate(T_list):
        ax[0].axhline(100 * a.share_ratio * uniform_first_share(T, 1), ls="--", lw=1, color="grey",
                      label=f"sink bar: {a.share_ratio:g}x uniform, T={T}")
        ax[0].axhline(100 * uniform_first_share(T, 1), ls=":", lw=1, color="grey",
                      label=f"uniform, T={T}" if k == 0 else f"uniform, T={T}")
    ax[1].axhline(100 * a.loss_gap, ls="--", lw=1, color="grey", label=f"sink bar: +{100 * a.loss_gap:g}%")
    ax[1].axhline(0, lw=0.8, color="black")
    ax[0].set_title("first-position attention (strongest layer)")
    ax[0].set_ylabel("share of attention, %")
    ax[1].set_title("loss past W: window (0+W) vs 4 sinks + (W-4), ± 2 s.e.")
    ax[1].set_ylabel("(window - 4 sinks) / 4 sinks, %")
    ax[2].set_title("validation loss (per token: not comparable across tokenizers)")
    ax[2].set_ylabel("loss, nats")
    for x in ax:
        x.set_xlabel("training tokens")
        x.set_xscale("log")
        x.grid(alpha=0.3)
        x.legend(fontsize=7)
    fig.suptitle("When do attention sinks emerge? Vanilla models, one factor varied per run")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.png)), exist_ok=True)
    fig.savefig(a.png, dpi=110)

    # ---- summary ----
    print(f"{'run':<22} {'tokens':>8} {'val':>7} {'max share':>10} {'x unif':>7} {'window':>8} {'4 sinks':>8} "
          f"{'gap':>8}  verdict")
    for r in runs:
        if not r["evals"]:
            print(f"{r['name']:<22} no evaluation")
            continue
        e, v = r["evals"][-1], r["final"]
        print(f"{r['name']:<22} {fmt_tokens(e['step'] * r['per_step']):>8} {e['val_loss']:>7.3f} "
              f"{100 * v['best_share']:>8.1f}%L{v['best_layer']} {v['x_uniform']:>6.1f}x {e['window_loss']:>8.4f} "
              f"{e['sink4_loss']:>8.4f} {100 * v['rel_gap']:>+7.2f}%  {verdict_text(v)}")
    print(f"criterion: a layer > {a.share_ratio:g}x uniform first-position share AND window loss > 4-sink loss by "
          f"> {100 * a.loss_gap:g}%; wrote {a.csv}, {a.md}, {a.png}")


if __name__ == "__main__":
    main()
