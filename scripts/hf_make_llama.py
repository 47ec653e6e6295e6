#!/usr/bin/env python3
"""Makes a small Hugging Face Llama folder the way transformers users make theirs, for the import tests.

    hf_make_llama.py OUT_DIR

A random LlamaForCausalLM (2 layers, width 64, 4 heads, 2 key/value heads, untied) saved by save_pretrained, and a
sentencepiece tokenizer with sentencepiece's defaults, which Llama's own has too and streamsink's do not: nmt_nfkc
normalisation and a dummy prefix ("▁" before the text), byte fallback, <unk> <s> </s> at 0 1 2, no <pad>, no sink
symbols; saved by LlamaTokenizer(legacy=False).save_pretrained, so add_bos_token is true. Deterministic (seeded).
Exit status 3 (and a line on stderr) when the Python packages cannot be imported: the C++ test skips then.
"""
import os
import random
import sys


def corpus(path: str) -> None:
    rng = random.Random(7)
    words = ("the cache keeps a few sink tokens and a window of recent ones while the stream goes on "
             "attention scores softmax rotary position kernel driver buffer page inode scheduler queue lock "
             "naïve café 日本語 テキスト Ελληνικά русский 12345 67 89").split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(3000):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) + ".\n")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import sentencepiece as spm
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer
    except Exception as e:  # ImportError, or a broken install
        print(f"hf_make_llama: cannot import the Python packages: {e!r}", file=sys.stderr)
        return 3
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    text = os.path.join(out, "corpus.txt")
    corpus(text)
    prefix = os.path.join(out, "sp")
    spm.SentencePieceTrainer.train(input=text, model_prefix=prefix, vocab_size=600, model_type="bpe",
                                   byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   num_threads=1, minloglevel=2)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.2)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)  # not all ones: a norm weight read wrongly shows in the logits
    hf = os.path.join(out, "hf")
    model.save_pretrained(hf)
    LlamaTokenizer(prefix + ".model", legacy=False).save_pretrained(hf)
    print(hf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
