#!/usr/bin/env python3
"""Loads a `streamsink export-hf` folder with Hugging Face transformers and prints what it computes, as JSON.

    hf_check.py MODEL_DIR --request REQUEST.json

REQUEST.json: {"ids": [[int, ...], ...], "texts": [str, ...]}. Prints one JSON object on stdout:
  logits      LlamaForCausalLM(ids).logits per sequence, [T][V] float32 values
  text_ids    LlamaTokenizer (slow, sentencepiece) encode(text) with the folder's own special-token settings
  decoded     LlamaTokenizer decode(text_ids)
  fast_text_ids / fast_error   the converted fast tokenizer's ids (informational)
  special     the tokenizer's special ids, and the additional special tokens → ids
  versions    transformers, torch, sentencepiece
Exit status 3 (and a line on stderr) when the Python packages cannot be imported: the C++ test skips then.
"""
import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the exported folder")
    ap.add_argument("--request", required=True, help="JSON file with ids and texts")
    args = ap.parse_args()
    try:
        import google.protobuf  # noqa: F401  (LlamaTokenizer with legacy=false needs it)
        import sentencepiece
        import torch
        import transformers
        from transformers import LlamaForCausalLM, LlamaTokenizer
    except Exception as e:  # ImportError, or a broken install
        print(f"hf_check: cannot import the Python packages: {e!r}", file=sys.stderr)
        return 3

    with open(args.request) as f:
        req = json.load(f)
    torch.set_grad_enabled(False)
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = LlamaTokenizer.from_pretrained(args.model)

    out = {
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "sentencepiece": sentencepiece.__version__},
        "logits": [],
        "text_ids": [],
        "decoded": [],
        "special": {
            "unk": tok.unk_token_id, "bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id,
            "additional": {t: tok.convert_tokens_to_ids(t) for t in tok.additional_special_tokens},
        },
    }
    for ids in req.get("ids", []):
        x = torch.tensor([ids], dtype=torch.long)
        out["logits"].append(model(input_ids=x).logits[0].float().tolist())
    for text in req.get("texts", []):
        ids = tok.encode(text)  # add_special_tokens=True: the folder's add_bos_token/add_eos_token decide
        out["text_ids"].append(ids)
        out["decoded"].append(tok.decode(ids))
    try:
        from transformers import AutoTokenizer

        fast = AutoTokenizer.from_pretrained(args.model, use_fast=True)
        out["fast_text_ids"] = [fast.encode(t) for t in req.get("texts", [])]
    except Exception as e:
        out["fast_error"] = repr(e)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
