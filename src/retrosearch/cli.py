"""The `retrosearch` command. It only parses options, loads configs and calls the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

STAGE_COMMANDS = ("generate", "revise", "select", "sft", "eval")
EXIT_ROW_ERRORS = 3  # the run finished, but some rows failed: 2 is bad input, 130 an interruption
HELP = {
    "input": "traces: JSONL, JSON, Parquet or a Hugging Face dataset id (name or name:split)",
    "output": "run folder (rerunning the same command resumes it)",
    "limit": "only the first N samples / problems",
    "overwrite": "start the run folder afresh instead of resuming",
    "concurrency": "samples in flight at once (0: twice the batch size)",
    "problem_field": "field holding the problem text",
    "answer_field": "field holding the gold answer",
    "trace_field": "field holding the trace (model response)",
    "id_field": "field holding a unique sample id",
    "gold_from_trace": "the dataset holds only correct traces: take each trace's answer as gold",
    "max_input_tokens": "skip traces longer than this many tokens",
    "keywords": "transition keywords that open a new thought (case-insensitive)",
    "gamma": "discount per unit of length in the value gamma^length * R",
    "length_unit": "length counted in reasoning steps (blank-line segments) or tokens",
    "rollouts": "rollouts per thought switch; the best one is kept",
    "partial": "share of switches revisited, seeded per trace (1.0: full Retro-Search)",
    "temperature": "sampling temperature",
    "top_p": "nucleus sampling threshold",
    "max_new_tokens": "most tokens one generation may write",
    "step_max_tokens": "most tokens of the first, switch-suppressed step",
    "bound": "stop rollouts as soon as they can no longer be shorter (same results, less work)",
    "seed": "global seed; per-request seeds derive from it and the sample id",
    "model": "hub id, local path, or 'organism' (the embedded default)",
    "revision": "model revision (branch, tag or commit) on the hub",
    "engine": "generation backend",
    "device": "cpu, cuda, cuda:1, ... (default: cuda when available)",
    "dtype": "model weights dtype (auto, float32, bfloat16, float16)",
    "batch_size": "most requests per engine batch",
    "problems": "'organism' (held-out set), 'organism:train', or a file / dataset id of problems",
    "samples": "traces per problem",
    "keep_correct": "traces.jsonl keeps only the correct traces",
    "shortest_correct_of": "keep the shortest correct trace among the first N samples of each problem",
    "benchmarks": "benchmark names (aime24 aime25 amc23 math500 gsm8k olympiadbench gaokao2023en organism) or all",
    "data_dir": "local benchmark copies laid out as DIR/<name>/test.jsonl (default: hub ids)",
    "epochs": "training epochs",
    "learning_rate": "peak learning rate (cosine schedule)",
    "max_length": "longest training row in tokens; longer rows are refused (or dropped with --drop-long)",
    "drop_long": "leave out rows longer than --max-length (their exact count is reported)",
    "shard": "i/n: revise only input positions p with p % n == i (a job array; then `retrosearch merge`)",
    "tensor_parallel_size": "vllm: GPUs one model is split over",
    "gpu_memory_utilization": "vllm: share of GPU memory for weights and KV cache",
    "base_url": "openai: server address, e.g. http://127.0.0.1:8000 (without /v1)",
    "api_key_env": "openai: environment variable holding the API key (the key itself never goes on the command line)",
    "served_model": "openai: the model's name on the server (default: --model; the organism's checkpoint path)",
    "prompt_format": "openai: send token ids (exact) or decoded text; auto tries ids and falls back once",
    "retries": "openai: retries per request on 408/429/5xx, timeouts and broken connections (backoff with jitter)",
    "ban_method": "openai: how a step's banned start is masked: logit_bias (vLLM, SGLang, llama.cpp, OpenAI), "
    "generation_config (transformers serve) or reject (resample; any server)",
    "ban_attempts": "openai, --ban-method reject: samples of a switch-suppressed step before giving it up",
    "ray": "spread the work over a pool of Ray actors, each owning one engine (pip install 'retrosearch[ray]')",
    "address": "Ray cluster to join (default: RAY_ADDRESS, else a local one started for this run)",
    "replicas": "Ray actors, each with its own engine",
    "gpus_per_replica": "GPUs per Ray actor (0: CPU actors)",
    "lora": "train LoRA adapters (PEFT) instead of all weights; merged into the final model",
}


def _parser() -> argparse.ArgumentParser:
    from retrosearch.config import add_options
    from retrosearch.engines import EngineConfig
    from retrosearch.evaluate import EvalConfig
    from retrosearch.generate import GenerateConfig
    from retrosearch.revise import ReviseConfig
    from retrosearch.search.retro_search import RetroSearchConfig
    from retrosearch.selection import SelectConfig
    from retrosearch.sft import SFTRunConfig

    parser = argparse.ArgumentParser(
        prog="retrosearch",
        description="Retro-Search: revise reasoning traces to be shorter and still correct.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="figures of trace datasets (no model needed)")
    inspect.add_argument("files", nargs="+", help="trace files (JSONL, JSON, Parquet) or dataset ids")
    inspect.add_argument("--tokenizer", help="count tokens with this tokenizer (default: whitespace words)")
    inspect.add_argument("--keywords", nargs="+", help=HELP["keywords"])
    inspect.add_argument("--limit", type=int, help=HELP["limit"])
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for name in ("problem_field", "answer_field", "trace_field"):
        inspect.add_argument("--" + name.replace("_", "-"), dest=name, help=HELP[name])
    inspect.add_argument("--gold-from-trace", action="store_true", help=HELP["gold_from_trace"])

    generate = commands.add_parser("generate", help="sample traces for problems")
    generate.add_argument("--config", help="YAML file of options (command-line options win)")
    add_options(generate, GenerateConfig, EngineConfig, help_text=HELP)

    revise = commands.add_parser("revise", help="revise traces with Retro-Search")
    revise.add_argument("--config", help="YAML file of options (command-line options win)")
    add_options(revise, ReviseConfig, RetroSearchConfig, EngineConfig, help_text=HELP)

    select = commands.add_parser("select", help="shortest-correct-of-N baseline from generate samples")
    add_options(select, SelectConfig, help_text=HELP)

    sft = commands.add_parser("sft", help="fine-tune a student on traces with TRL (full or LoRA)")
    sft.add_argument("--config", help="YAML file of options (command-line options win)")
    add_options(sft, SFTRunConfig, help_text=HELP)

    evaluate = commands.add_parser("eval", help="accuracy, length and switches on math benchmarks")
    evaluate.add_argument("--config", help="YAML file of options (command-line options win)")
    add_options(evaluate, EvalConfig, EngineConfig, help_text=HELP)

    merge = commands.add_parser("merge", help="merge the run folders of revise --shard 0/n .. n-1/n")
    merge.add_argument("shards", nargs="+", help="the shard run folders")
    merge.add_argument("--output", required=True, help="merged run folder")

    run = commands.add_parser("run", help="run every stage of a YAML recipe, resumable, and print the table")
    run.add_argument("recipe", help="recipe YAML file")
    run.add_argument("--output", help="run folder (default: the recipe's)")
    run.add_argument("--dry-run", action="store_true", help="print the plan without loading any model")

    demo = commands.add_parser("demo", help="the main job on the embedded organism, in minutes on a CPU")
    demo.add_argument("--output", default="runs/demo", help=HELP["output"])
    demo.add_argument("--problems", type=int, default=128, help="held-out organism problems to solve")
    demo.add_argument("--seed", type=int, default=0, help=HELP["seed"])
    demo.add_argument("--overwrite", action="store_true", help=HELP["overwrite"])

    organism = commands.add_parser("organism", help="the embedded organism: train it, export its teacher data")
    organism_commands = organism.add_subparsers(dest="organism_command", required=True, metavar="COMMAND")
    train = organism_commands.add_parser("train", help="train the organism (resumable)")
    train.add_argument("--out", required=True, help="checkpoint folder (rerun to resume)")
    train.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    train.add_argument("--minutes", type=float, help="stop after this much wall time")
    train.add_argument("--batch-size", type=int, default=64, help="traces per step")
    train.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate")
    train.add_argument("--eval-every", type=int, default=200, help="steps between evaluations")
    train.add_argument("--seed", type=int, default=0, help="data and init seed")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps")
    train.add_argument("--min-learning-rate", type=float, default=2e-4, help="learning rate at the end of the cosine")
    train.add_argument("--init-from", help="start from these weights with a fresh optimizer (e.g. to retrain habits)")
    teacher = organism_commands.add_parser("teacher", help="export teacher traces (the strong model's dataset)")
    teacher.add_argument("--out", required=True, help="JSONL file to write")
    teacher.add_argument("--count", type=int, default=1000, help="problems")
    teacher.add_argument("--split", choices=("train", "test"), default="train", help="problem split")
    teacher.add_argument("--seed", type=int, default=0, help="seed")
    return parser


def _run(args: argparse.Namespace) -> int:
    from retrosearch import config as configs

    if args.command == "inspect":
        from retrosearch.data import FieldMap
        from retrosearch.inspect_traces import inspect_file, token_counter
        from retrosearch.rundir import print_summary
        from retrosearch.trace import with_keywords

        count = token_counter(args.tokenizer)
        fields = FieldMap(args.problem_field, args.answer_field, args.trace_field, None, args.gold_from_trace)
        for path in args.files:
            figures = inspect_file(path, fields, with_keywords(args.keywords), count, args.limit)
            if args.json:
                print(json.dumps(figures))
            else:
                print_summary(f"retrosearch inspect — {path}", figures)
        return 0
    if args.command in STAGE_COMMANDS:
        from retrosearch.recipe import run_stage

        result = run_stage(args.command, configs.merged_options(args, getattr(args, "config", None)))
        if args.command in ("select", "sft"):
            print(json.dumps({key: value for key, value in result.items() if key != "config"}))
        if result.get("errors"):
            print(
                f"retrosearch: {result['errors']} row(s) failed (status 'error', with the reason in the output); "
                "rerun the same command to try them again",
                file=sys.stderr,
            )
            return EXIT_ROW_ERRORS
        return 0
    if args.command == "merge":
        from retrosearch.revise import merge

        merge(args.shards, args.output)
        return 0
    if args.command == "run":
        from retrosearch.recipe import run_recipe

        print(run_recipe(args.recipe, args.output, args.dry_run), end="")
        return 0
    if args.command == "demo":
        from retrosearch.demo import demo

        demo(args.output, args.problems, args.seed, args.overwrite)
        return 0
    if args.organism_command == "train":
        from retrosearch.organism.train import TrainConfig, train

        train(
            Path(args.out),
            TrainConfig(
                steps=args.steps,
                minutes=args.minutes,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                min_learning_rate=args.min_learning_rate,
                warmup_steps=args.warmup_steps,
                init_from=args.init_from,
                eval_every=args.eval_every,
                seed=args.seed,
                threads=args.threads,
            ),
        )
        return 0
    from retrosearch.organism.export import export_teacher

    written = export_teacher(Path(args.out), args.count, args.split, args.seed)
    print(f"wrote {written} teacher traces to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from retrosearch.data import DataError
    from retrosearch.rundir import RunError

    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (DataError, RunError, ValueError, FileNotFoundError) as error:
        if os.environ.get("RETROSEARCH_DEBUG"):
            raise
        print(f"retrosearch: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("retrosearch: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
