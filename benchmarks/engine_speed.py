"""Revise at its engine's speed? For each engine, on SmolLM2-135M-Instruct and real MATH500 traces from ../shared.

    python benchmarks/engine_speed.py [--engines transformers,vllm] [--traces 24] [--max-new-tokens 96]

Per engine, in a process of its own (vLLM in .venv-vllm, see `make vllm-setup`), with one engine loaded once:
1. revise: `retrosearch revise` of the first N traces (the Sky-T1 system prompt of the weak-to-strong recipe);
   the tokens of the rollouts the search used (not those of rollouts started ahead and then cancelled) per
   second of wall time;
2. raw: the same engine's plain batched generation (`engine.generate`, all at once) on the same rollout prompts
   revise sent (recorded), with the same sampling, per-rollout token budget and batch size, no stops or bans,
   after the engine's prefix cache was emptied; its generated tokens per second.
ratio = revise / raw (target ≥ 0.8). peak_rss_mb: the largest sum of resident sets over the measuring process and
its descendants (vLLM's engine core and worker run in children), sampled every 0.2 s. Prints a table, then, last,
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def measure(args: argparse.Namespace) -> dict:
    from retrosearch._fixtures.smollm2 import smollm2_folder
    from retrosearch.engines import EngineConfig, PromptConfig, SamplingConfig, load_engine
    from retrosearch.search.retro_search import RetroSearchConfig
    from retrosearch.stages.revise import ReviseConfig, revise

    system = yaml.safe_load(RECIPE.read_text())["x-sky-t1-system-prompt"]
    engine_config = EngineConfig(
        model=str(smollm2_folder()),
        engine=args.worker,
        batch_size=args.batch_size,
        prompt=PromptConfig(system_prompt=system),
    )
    engine = recording(load_engine(engine_config))
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)

    def revised(lookahead: int) -> tuple[dict, float, dict]:
        """One revise of the traces from an empty prefix cache: its summary, wall seconds and the engine's counts."""
        engine.reset_prefix_cache()
        engine.rollout_prompts.clear()
        before = {"generated_tokens": engine.generated_tokens, **engine.counts}
        with tempfile.TemporaryDirectory() as scratch:
            started = time.monotonic()
            summary = revise(
                ReviseConfig(input=str(TRACES), output=scratch, limit=args.traces),
                RetroSearchConfig(sampling=sampling, partial=args.partial, lookahead=lookahead),
                engine_config,
                engine=engine,
                quiet=True,
            )
            seconds = time.monotonic() - started
        after = {"generated_tokens": engine.generated_tokens, **engine.counts}
        return summary, seconds, {name: count - before.get(name, 0) for name, count in after.items()}

    # each --compare-lookahead value, then the default's measured run: every run after the first is warm alike
    compared = {}
    if args.compare_lookahead:
        revised(args.compare_lookahead[0])  # a warm-up: the engine's first run pays its start-up
        for lookahead in args.compare_lookahead:
            summary, seconds, counts = revised(lookahead)
            compared[lookahead] = {
                "seconds": round(seconds, 1),
                "rows_tokens": summary["generated_tokens"],
                "engine_tokens": counts["generated_tokens"],
                "cancelled_requests": counts.get("cancelled_requests"),
                "cancelled_tokens": counts.get("cancelled_tokens"),
            }
    summary, revise_seconds, counts = revised(RetroSearchConfig().lookahead)
    revise_tokens, engine_tokens = summary["generated_tokens"], counts.pop("generated_tokens")
    revise_counts = counts
    engine.reset_prefix_cache()
    raw_tokens, raw_seconds = asyncio.run(raw_generation(engine, engine.rollout_prompts, sampling))
    if hasattr(engine, "shutdown"):
        engine.shutdown()
    revise_rate, raw_rate = revise_tokens / revise_seconds, raw_tokens / raw_seconds
    return {
        "model": "SmolLM2-135M-Instruct",
        "traces": args.traces,
        "searched": summary["revised"] + summary["unchanged"],
        "revised": summary["revised"],
        "errors": summary["errors"],
        "rollouts": summary["rollouts"],
        "rollouts_sent": len(engine.rollout_prompts),
        "revise_tokens": revise_tokens,
        "revise_engine_tokens": engine_tokens,
        "revise_seconds": round(revise_seconds, 1),
        "revise_tokens_per_s": round(revise_rate, 1),
        "raw_tokens": raw_tokens,
        "raw_seconds": round(raw_seconds, 1),
        "raw_tokens_per_s": round(raw_rate, 1),
        "ratio": round(revise_rate / raw_rate, 2),
        "revise_counts": revise_counts,
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
    parser.add_argument("--traces", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=96, help="per rollout, and per raw prompt")
    parser.add_argument("--partial", type=float, default=0.25, help="share of switches revisited")
    parser.add_argument("--batch-size", type=int, default=16)
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
        python = PYTHONS[name]
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
        print(
            f"{name:13} revise {figures['revise_tokens_per_s']:6.1f} tok/s, raw {figures['raw_tokens_per_s']:6.1f} "
            f"tok/s, ratio {figures['ratio']:.2f}, peak {figures['peak_rss_mb']} MB ({figures['rollouts']} rollouts)"
        )
    print(json.dumps({"engines": results}))


def _passed(args: argparse.Namespace) -> list[str]:
    return [
        f"--traces={args.traces}",
        f"--max-new-tokens={args.max_new_tokens}",
        f"--partial={args.partial}",
        f"--batch-size={args.batch_size}",
        *([f"--compare-lookahead={','.join(map(str, args.compare_lookahead))}"] if args.compare_lookahead else []),
    ]


if __name__ == "__main__":
    main()
