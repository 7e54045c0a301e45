"""Does the transformers engine's KV memory follow the tokens in flight, or the longest row times the batch?

    python benchmarks/kv_memory.py [--lengths 1024,4096,16384] [--batches 16,64] [--new-tokens 8]

A random-weight Llama with SmolLM2-135M's attention (9 query heads over 3 key heads of 64 dims, float32, its
tokenizer and vocabulary) but 2 layers and a 32k context, so that 16k-token rows fit. For each longest length L and
batch B, in a process of its own: B prompts whose lengths spread evenly from L/16 to L (rollouts cut from traces of
different lengths look like this), each generating --new-tokens, through an engine of max_batch_size B with the
prefix cache off. At every decoding step the bytes held by the rows' KV buffers are summed; reported at the step
where they peak, with the tokens in flight then (`needed_bytes`: those tokens' keys and values exactly) and what one
buffer as wide as the longest row for every row would hold (`padded_bytes`, the engine's earlier slot cache); and the
process's peak resident set above what it held before the first prompt. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

LAYERS, KEY_HEADS, HEAD_DIM, FLOAT_BYTES = 2, 3, 64, 4
TOKEN_BYTES = LAYERS * 2 * KEY_HEADS * HEAD_DIM * FLOAT_BYTES  # keys and values of one token, all layers


def measure(longest: int, batch: int, new_tokens: int) -> dict:
    import psutil
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from retrosearch._fixtures.smollm2 import smollm2_folder
    from retrosearch.engines.base import Request
    from retrosearch.engines.transformers_engine import TransformersEngine

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=KEY_HEADS * 3 * HEAD_DIM,
        intermediate_size=1536,
        num_hidden_layers=LAYERS,
        num_attention_heads=KEY_HEADS * 3,
        num_key_value_heads=KEY_HEADS,
        max_position_embeddings=32768,
        eos_token_id=tokenizer.eos_token_id,
    )
    engine = TransformersEngine(LlamaForCausalLM(config), tokenizer, max_batch_size=batch, prefix_cache_mb=0)
    lengths = [round(longest / 16 + (longest - longest / 16) * n / max(1, batch - 1)) for n in range(batch)]
    generator = torch.Generator().manual_seed(1)
    prompts = [tuple(torch.randint(3, len(tokenizer), (length,), generator=generator).tolist()) for length in lengths]

    peak = {"kv_bytes": 0}
    step = engine._step

    def watched(rows):
        held = sum(keys.untyped_storage().nbytes() * 2 for row in rows for keys, _ in row.kv.buffers)
        if held > peak["kv_bytes"]:
            in_flight = sum(row.kv.length for row in rows)
            peak.update(kv_bytes=held, rows=len(rows), tokens_in_flight=in_flight)
            peak.update(longest_row=max(row.kv.length for row in rows))
        return step(rows)

    engine._step = watched
    process = psutil.Process()
    before, most, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            most[0] = max(most[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    engine.run_batch([Request(prompt, new_tokens, temperature=1.0, seed=n) for n, prompt in enumerate(prompts)])
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    return {
        "longest": longest,
        "batch": batch,
        "seconds": round(seconds, 1),
        **peak,
        "needed_bytes": peak["tokens_in_flight"] * TOKEN_BYTES,
        "padded_bytes": peak["rows"] * peak["longest_row"] * TOKEN_BYTES,
        "kv_over_needed": round(peak["kv_bytes"] / (peak["tokens_in_flight"] * TOKEN_BYTES), 3),
        "kv_over_padded": round(peak["kv_bytes"] / (peak["rows"] * peak["longest_row"] * TOKEN_BYTES), 3),
        "rss_growth_mb": round((most[0] - before) / 2**20),
    }


def sweep(lengths: list[int], batches: list[int], new_tokens: int) -> list[dict]:
    """Each configuration in a fresh process, so that its resident set is its own."""
    results = []
    for longest in lengths:
        for batch in batches:
            command = [sys.executable, __file__, "--one", f"{longest},{batch}", f"--new-tokens={new_tokens}"]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
    return results


def numbers(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=numbers, default=[1024, 4096, 16384], help="longest prompt of a batch")
    parser.add_argument("--batches", type=numbers, default=[16, 64])
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--one", type=numbers, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.new_tokens)))
        return
    print(json.dumps({"token_bytes": TOKEN_BYTES, "sweep": sweep(args.lengths, args.batches, args.new_tokens)}))


if __name__ == "__main__":
    main()
