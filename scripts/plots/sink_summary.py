#!/usr/bin/env python3
"""Says, per model, whether an attention sink grew: the share of attention each layer gives the first token (the
sink token for `sink: token` models), against the share a uniform causal attention would give it.

  sink_summary.py NAME=RUN/attention/attention.json [NAME=...]
"""
import json
import sys


def main():
    for spec in sys.argv[1:]:
        name, path = spec.split("=", 1)
        j = json.load(open(path))
        uniform = j["uniform_first_token_share"]
        shares = [L["mean_first_token_share"] for L in j["layers"]]
        best = max(shares)
        verdict = ("a sink: the first token draws %.0f× its uniform share in its strongest layer" % (best / uniform)
                   if best > 5 * uniform else
                   "no sink: no layer gives the first token more than 5× its uniform share")
        print(f"{name:>8}: first-token attention per layer " + " ".join(f"{s:.3f}" for s in shares) +
              f" (uniform {uniform:.3f}) -> {verdict}")


if __name__ == "__main__":
    main()
