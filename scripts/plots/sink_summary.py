#!/usr/bin/env python3
"""Says, per model, whether an attention sink grew: the share of attention each layer gives the first token (the
sink token for `sink: token` models), against the share a uniform causal attention would give it.

  sink_summary.py NAME=RUN/attention/attention.json [NAME=...]
"""
import argparse
import json
import sys


def spec(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"'{text}': want NAME=PATH/attention.json")
    return name, path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=spec, metavar="NAME=attention.json",
                    help="a model's name and the attention.json `streamsink inspect-attention` wrote for it")
    args = ap.parse_args()
    for name, path in args.models:
        try:
            with open(path) as f:
                j = json.load(f)
            uniform = j["uniform_first_token_share"]
            shares = [L["mean_first_token_share"] for L in j["layers"]]
            best = max(shares)  # ValueError: no layers
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.exit(f"sink_summary.py: {path}: not an attention.json from `streamsink inspect-attention` ({e!r})")
        verdict = ("a sink: the first token draws %.0f× its uniform share in its strongest layer" % (best / uniform)
                   if best > 5 * uniform else
                   "no sink: no layer gives the first token more than 5× its uniform share")
        print(f"{name:>8}: first-token attention per layer " + " ".join(f"{s:.3f}" for s in shares) +
              f" (uniform {uniform:.3f}) -> {verdict}")


if __name__ == "__main__":
    main()
