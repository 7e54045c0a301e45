"""Revise at its engine's speed? For each engine, on SmolLM2-135M-Instruct and real MATH500 traces from ../shared.

    python benchmarks/engine_speed.py [--engines transformers,vllm] [--traces 500] [--max-trace-tokens 1800]
                                      [--partial 0.5] [--max-new-tokens 128] [--repeats 3]

Per engine, in a process of its own (vLLM in .venv-vllm, see `make vllm-setup`), with one engine loaded once and
warmed up on a few prompts before anything is timed (its start-up is on neither side), then --repeats times:
1. revise: `retrosearch revise` of the traces among the first --traces of at most --max-trace-tokens tokens (the
   Sky-T1 system prompt of the weak-to-strong recipe), from an empty prefix cache; the tokens of the rollouts the
   search used (not those of rollouts started ahead and then cancelled) per second of wall time;
2. raw: the same engine's plain batched generation (`engine.generate`, all at once) on the same rollout prompts
   revise sent (recorded), with the same sampling, per-rollout token budget and batch size, no stops or bans,
   from an empty prefix cache; its generated tokens per second.
ratio = revise / raw of each repeat (target ≥ 0.9); the JSON holds every repeat and the median and spread (least,
most) of each figure. peak_rss_mb: the largest sum of resident sets over the measuring process and its
descendants (vLLM's engine core and worker run in children), sampled every 0.2 s. Then benchmarks/kv_memory.py's
sweep (transformers' KV memory against the tokens in flight; --no-kv-sweep skips it). Prints a table, then, last,
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RETROSEARCH_SHARED", ROOT.parent / "shared"))
TRACES = SHARED / "data" / "traces" / "sky-t1-math-correct-5k-27b_math500.jsonl"
RECIPE = ROOT / "recipes" / "weak-to-strong" / "openthoughts-r1-distill-32b.yaml"
PYTHONS = {"transformers": ROOT / ".venv" / "bin" / "python", "vllm": ROOT / ".venv-vllm" / "bin" / "python"}


def recording(engine):
    """The engine, with the prompt of every rollout it is asked for kept in `engine.rollout_prompts` (a rollout's
    first request: its second extends the first's completion)."""
    from retrosearch.engines.base import Completion, Request

    complete = engine.complete
    engine.rollout_prompts = []

    async def recorded(request: Request) -> Completion:
        if request.then is not None:
            engine.rollout_prompts.append(request.prompt_ids)
        return await complete(request)

    engine.complete = recorded
    return engine


async def raw_generation(engine, prompts: Sequence[tuple[int, ...]], sampling) -> tuple[int, float]:
    from retrosearch.engines.base import Request

    requests = [
        Request(tuple(prompt), sampling.max_new_tokens, sampling.temperature, sampling.top_p, seed=number)
        for number, prompt in enumerate(prompts)
    ]
    started = time.monotonic()
    completions = await engine.generate(requests)
    return sum(len(completion.token_ids) for completion in completions), time.monotonic() - started


def spread(values: Sequence[float]) -> dict:
    return {"median": statistics.median(values), "least": min(values), "most": max(values)}


def measure(args: argparse.Namespace) -> dict:
    from retrosearch._fixtures.smollm2 import smollm2_folder
    from retrosearch.engines import EngineConfig, PromptConfig, SamplingConfig, load_engine
    from retrosearch.search.retro_search import RetroSearchConfig
    from retrosearch.stages.revise import ReviseConfig, revise

    system = yaml.safe_load(RECIPE.read_text())["x-sky-t1-system-prompt"]
    engine_config = EngineConfig(
        model=str(smollm2_folder()),
        engine=args.worker,
        device=args.device,
        batch_size=args.batch_size,
        prompt=PromptConfig(system_prompt=system),
    )
    engine = recording(load_engine(engine_config))
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    questions = [json.loads(line)["question"] for line in TRACES.read_text().splitlines()[:4]]
    warm_up = [tuple(engine.encode(engine.chat_prompt(question))) for question in questions]
    asyncio.run(raw_generation(engine, warm_up, SamplingConfig(max_new_tokens=16)))

    def revised(lookahead: int) -> tuple[dict, float, dict, str]:
        """One revise of the traces from an empty prefix cache: its summary, wall seconds, the engine's counts and
        the sha256 of its rows."""
        engine.reset_prefix_cache()
        engine.rollout_prompts.clear()
        before = {"generated_tokens": engine.generated_tokens, **engine.counts}
        with tempfile.TemporaryDirectory() as scratch:
            started = time.monotonic()
            summary = revise(
                ReviseConfig(
                    input=str(TRACES), output=scratch, limit=args.traces, max_input_tokens=args.max_trace_tokens
                ),
                RetroSearchConfig(sampling=sampling, partial=args.partial, lookahead=lookahead),
                engine_config,
                engine=engine,
                quiet=True,
            )
            seconds = time.monotonic() - started
            rows = hashlib.sha256((Path(scratch) / "revised.jsonl").read_bytes()).hexdigest()
        after = {"generated_tokens": engine.generated_tokens, **engine.counts}
        return summary, seconds, {name: count - before.get(name, 0) for name, count in after.items()}, rows

    compared = {}
    for lookahead in args.compare_lookahead:
        summary, seconds, counts, rows = revised(lookahead)
        compared[lookahead] = {
            "seconds": round(seconds, 1),
            "rows_sha256": rows,
            "rows_tokens": summary["generated_tokens"],
            "engine_tokens": counts["generated_tokens"],
            "cancelled_requests": counts.get("cancelled_requests"),
            "cancelled_tokens": counts.get("cancelled_tokens"),
        }
    repeats = []
    for _ in range(args.repeats):
        summary, revise_seconds, counts, rows = revised(RetroSearchConfig().lookahead)
        prompts = list(engine.rollout_prompts)
        engine.reset_prefix_cache()
        raw_tokens, raw_seconds = asyncio.run(raw_generation(engine, prompts, sampling))
        revise_rate, raw_rate = summary["generated_tokens"] / revise_seconds, raw_tokens / raw_seconds
        repeats.append(
            {
                "rows_sha256": rows,
                "revise_tokens": summary["generated_tokens"],
                "revise_engine_tokens": counts.pop("generated_tokens"),
                "revise_seconds": round(revise_seconds, 1),
                "revise_tokens_per_s": round(revise_rate, 1),
                "raw_tokens": raw_tokens,
                "raw_seconds": round(raw_seconds, 1),
                "raw_tokens_per_s": round(raw_rate, 1),
                "ratio": round(revise_rate / raw_rate, 3),
                "revise_counts": counts,
            }
        )
    if hasattr(engine, "shutdown"):
        engine.shutdown()
    return {
        "model": "SmolLM2-135M-Instruct",
        "traces": summary["revised"] + summary["unchanged"] + summary["errors"],
        "searched": summary["revised"] + summary["unchanged"],
        "revised": summary["revised"],
        "errors": summary["errors"],
        "rollouts": summary["rollouts"],
        "rollouts_sent": len(prompts),
        "rows_identical": len({run["rows_sha256"] for run in repeats} | {c["rows_sha256"] for c in compared.values()})
        == 1,
        "revise_tokens_per_s": spread([run["revise_tokens_per_s"] for run in repeats]),
        "raw_tokens_per_s": spread([run["raw_tokens_per_s"] for run in repeats]),
        "ratio": spread([run["ratio"] for run in repeats]),
        "repeats": repeats,
        "lookahead_compared": compared,
    }


class PeakMemory:
    """The largest sum of resident set sizes over a process and its descendants, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.most = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            self.most = max(self.most, sum(_rss(pid) for pid in _tree(self.pid)))


def _tree(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="transformers,vllm")
    parser.add_argument("--traces", type=int, default=500, help="the first N traces of the MATH500 file")
    parser.add_argument("--max-trace-tokens", type=int, default=1800, help="of those, the traces this short")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="per rollout, and per raw prompt")
    parser.add_argument("--partial", type=float, default=0.5, help="share of switches revisited")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-kv-sweep", action="store_true", help="skip benchmarks/kv_memory.py's sweep")
    parser.add_argument("--device", help="cpu or cuda (default: the engine's own choice)")
    parser.add_argument("--python", help="one interpreter for every engine (default: .venv, and .venv-vllm for vllm)")
    parser.add_argument(
        "--compare-lookahead",
        type=lambda text: [int(value) for value in text.split(",")],
        default=[],
        help="revise also with these --lookahead values, warm, e.g. 1,4 (seconds, tokens kept and generated)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    if not TRACES.exists():
        sys.exit(f"{TRACES} is absent: the shared data sits beside the checkout (or set RETROSEARCH_SHARED)")
    results = {}
    for name in args.engines.split(","):
        python = Path(args.python) if args.python else PYTHONS[name]
        if not python.exists():
            sys.exit(f"{python} is absent: run `make {'vllm-setup' if name == 'vllm' else 'setup'}` first")
        command = [str(python), __file__, "--worker", name, *_passed(args)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as worker:
            peak = PeakMemory(worker.pid)
            output, _ = worker.communicate()
            peak.stop()
        if worker.returncode != 0:
            sys.exit(f"{name}: the measurement failed (exit {worker.returncode}); its output is above")
        results[name] = {**json.loads(output.strip().splitlines()[-1]), "peak_rss_mb": round(peak.most / 2**20)}
    for name, figures in results.items():
        revise_rate, raw_rate, ratio = (figures[key] for key in ("revise_tokens_per_s", "raw_tokens_per_s", "ratio"))
        print(
            f"{name:13} revise {revise_rate['median']:6.1f} tok/s, raw {raw_rate['median']:6.1f} tok/s, ratio "
            f"{ratio['median']:.2f} ({ratio['least']:.2f}-{ratio['most']:.2f} over {args.repeats}), peak "
            f"{figures['peak_rss_mb']} MB ({figures['rollouts']} rollouts, rows identical: {figures['rows_identical']})"
        )
    report = {"engines": results}
    if not args.no_kv_sweep:
        from kv_memory import TOKEN_BYTES, sweep

        report["kv_sweep"] = {"token_bytes": TOKEN_BYTES, "sweep": sweep([1024, 4096, 16384], [16, 64], 8)}
        for point in report["kv_sweep"]["sweep"]:
            print(
                f"kv sweep: longest {point['longest']:5}, batch {point['batch']:2}: KV {point['kv_over_needed']:.2f}x"
                f" the tokens in flight, {point['kv_over_padded']:.2f}x longest x batch"
            )
    print(json.dumps(report))


def _passed(args: argparse.Namespace) -> list[str]:
    return [
        f"--traces={args.traces}",
        f"--max-trace-tokens={args.max_trace_tokens}",
        f"--repeats={args.repeats}",
        f"--max-new-tokens={args.max_new_tokens}",
        f"--partial={args.partial}",
        f"--batch-size={args.batch_size}",
        *([f"--device={args.device}"] if args.device else []),
        *([f"--compare-lookahead={','.join(map(str, args.compare_lookahead))}"] if args.compare_lookahead else []),
    ]


if __name__ == "__main__":
    main()
