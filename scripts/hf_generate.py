"""tok/s of transformers' generate(cache_implementation="static") on a GPU: bf16 against tqk's configs
on a LlamaForCausalLM with Llama-3-8B layer shapes and random weights, no eager call before the first
generate (transformers compiles the decode step itself, mode="reduce-overhead"). What a user of HF
sees, beside `python -m tqk.bench model`'s decoder (issue 10, point 8).

    python scripts/hf_generate.py --layers 4 --new 64
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

import tqk

CONFIGS = {"bf16": None, "int4-g128": lambda: tqk.Int4WeightOnlyConfig(group_size=128),
           "int8": tqk.Int8WeightOnlyConfig, "fp8": tqk.Float8WeightOnlyConfig}


def timed_generate(model, prompt, kwargs) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(prompt, **kwargs)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--new", type=int, default=64, help="tokens generated per call")
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS))
    args = p.parse_args()
    cfg = transformers.LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                   num_hidden_layers=args.layers, num_attention_heads=32, num_key_value_heads=8,
                                   max_position_embeddings=512, tie_word_embeddings=False)
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt), generator=torch.Generator().manual_seed(0)).cuda()
    kwargs = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                  cache_implementation="static", pad_token_id=0)
    rows = []
    for name in args.configs.split(","):
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
        if CONFIGS[name] is not None:
            tqk.quantize_(model, CONFIGS[name]())
        with torch.no_grad():
            first = timed_generate(model, prompt, kwargs)  # compiles: no eager call before it
            secs = statistics.median(timed_generate(model, prompt, kwargs) for _ in range(args.reps))
        rows.append((name, args.new / secs, first))
        print(f"{name}: {args.new / secs:.0f} tok/s (first call {first:.1f} s)", flush=True)
        del model
        torch._dynamo.reset()
        torch.cuda.empty_cache()
    base = dict((r[0], r[1]) for r in rows).get("bf16")
    print(f"\n{torch.cuda.get_device_name()}, transformers {transformers.__version__}, {args.layers} layers, "
          f"prompt {args.prompt}, {args.new} new tokens, batch 1 (tok/s includes the prefill)")
    print(f"{'config':10} {'tok/s':>7} {'x bf16':>7} {'first call s':>12}")
    for name, tok_s, first in rows:
        print(f"{name:10} {tok_s:7.0f} {tok_s / base if base else float('nan'):7.2f} {first:12.1f}")


if __name__ == "__main__":
    main()
