#!/usr/bin/env python3
"""The average attention map of every layer, query position against key position, side by side (the paper's
Figure 2), from the attention.json `streamsink inspect-attention` wrote. The colour scale is logarithmic by default,
so that the column of the first token (the sink token for `sink: token` models) stands out against the rest.

  plot_attention.py ATTENTION_JSON OUT_PNG [--title TEXT] [--linear]
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

FLOOR = 1e-4  # the log scale's lowest colour: rarer attention (and exact zeros below the diagonal) is drawn as this


def load(path):
    """The maps [L, T, T] and the JSON, or exit 1 with a message that names the file."""
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"plot_attention.py: {path}: cannot read an attention.json from `streamsink inspect-attention` "
                 f"({e!r})")
    if not isinstance(j, dict) or "mean_maps" not in j:
        sys.exit(f"plot_attention.py: {path}: no \"mean_maps\" (written by an older streamsink, or not an "
                 f"attention.json): rerun `streamsink inspect-attention` to get the maps")
    try:
        maps = np.array(j["mean_maps"], dtype=np.float64)  # [L, T, T]; ValueError when ragged
        if maps.ndim != 3 or maps.shape[0] == 0 or maps.shape[1] != maps.shape[2]:
            raise ValueError(f"want [layers, T, T] numbers, got shape {maps.shape}")
    except (ValueError, TypeError) as e:
        sys.exit(f"plot_attention.py: {path}: \"mean_maps\" is not a list of square maps ({e})")
    return maps, j


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("attention_json", help="DIR/attention.json from `streamsink inspect-attention`")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--title", default="", help="the figure's title (default: what the maps average over)")
    ap.add_argument("--linear", action="store_true", help="linear colour scale (default: log, floor %g)" % FLOOR)
    a = ap.parse_args()
    maps, j = load(a.attention_json)
    n_layers, T = maps.shape[0], maps.shape[1]
    layers = j.get("layers") or []
    sink = j.get("sink", "")
    first = "sink token" if sink == "token" else "first token"

    # Above the diagonal (a key after its query) there is nothing to show: masked, drawn as the background.
    above = np.triu(np.ones((T, T), dtype=bool), k=1)
    if a.linear:
        norm = Normalize(vmin=0.0, vmax=max(float(maps.max()), 1e-12))
        shown = maps
    else:
        norm = LogNorm(vmin=FLOOR, vmax=max(1.0, float(maps.max())))
        shown = np.clip(maps, FLOOR, None)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")

    fig, axes = plt.subplots(1, n_layers, figsize=(3.4 * n_layers + 1.4, 3.9), squeeze=False,
                             constrained_layout=True)
    axes = axes[0]
    im, titles = None, []
    for l, ax in enumerate(axes):
        im = ax.imshow(np.ma.masked_array(shown[l], mask=above), cmap=cmap, norm=norm, origin="upper",
                       interpolation="nearest", extent=(-0.5, T - 0.5, T - 0.5, -0.5))
        L = layers[l] if l < len(layers) and isinstance(layers[l], dict) else {}
        title = f"layer {L.get('layer', l)}"
        if "mean_first_token_share" in L:
            title += f": {first} {L['mean_first_token_share']:.3f}"
        if sink in ("zero", "logit") and "mean_sink_column_mass" in L:
            title += f"\n(+ sink column {L['mean_sink_column_mass']:.3f})"
        ax.set_title(title, fontsize=9)
        titles.append(title.replace("\n", " "))
        ax.set_xlabel("key position")
        if l == 0:
            ax.set_ylabel("query position")
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=list(axes), shrink=0.9, label="attention" + ("" if a.linear else " (log scale)"))
    title = a.title or f"sink={sink or '?'}"
    title += f": attention averaged over {j.get('samples', '?')} windows of {T} tokens and every head"
    if "uniform_first_token_share" in j:
        title += (f"\nin each title: the {first}'s mean share (a uniform causal row would give it "
                  f"{j['uniform_first_token_share']:.3f})")
    fig.suptitle(title, fontsize=10)
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}: " + "; ".join(titles))


if __name__ == "__main__":
    main()
