"""The `retrosearch` command. It only parses options, loads configs and calls the Python API."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

EXIT_ROW_ERRORS = 3  # the run finished, but some rows failed: 2 is bad input, 130 an interruption
OUTPUT_HELP = "run folder (rerunning the same command resumes it)"


def _parser() -> argparse.ArgumentParser:
    from retrosearch.config import add_options
    from retrosearch.engines.base import PromptConfig
    from retrosearch.stages.registry import COMMANDS

    parser = argparse.ArgumentParser(
        prog="retrosearch",
        description="Retro-Search: revise reasoning traces to be shorter and still correct.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="figures of trace datasets (no model needed)")
    inspect.add_argument("files", nargs="+", help="trace files (JSONL, JSON, Parquet) or dataset ids")
    inspect.add_argument("--tokenizer", help="count tokens with this tokenizer (default: whitespace words)")
    inspect.add_argument("--keywords", nargs="+", help="transition keywords that open a new thought (any case)")
    inspect.add_argument("--limit", type=int, help="only the first N samples")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.add_argument("--problem-field", help="field holding the problem text")
    inspect.add_argument("--answer-field", help="field holding the gold answer")
    inspect.add_argument("--trace-field", help="field holding the trace (model response)")
    inspect.add_argument(
        "--gold-from-trace",
        action="store_true",
        help="the dataset holds only correct traces: take each trace's answer as gold",
    )

    prompt = commands.add_parser(
        "prompt", help="print the exact prompt of a row: at a thought switch, or for generation (tokenizer only)"
    )
    prompt.add_argument("--model", default="organism", help="hub id, local path, or 'organism' (its tokenizer)")
    prompt.add_argument("--revision", help="model revision on the hub")
    prompt.add_argument("--input", required=True, help="traces file (JSONL, JSON, Parquet) or dataset id")
    prompt.add_argument("--row", type=int, default=0, help="the row, counted from 0")
    prompt.add_argument("--switch", type=int, help="the thought switch of the row, from 0 (default: generation)")
    prompt.add_argument("--ids", action="store_true", help="print JSON with the text and its token ids")
    prompt.add_argument("--keywords", nargs="+", help="transition keywords that open a new thought (any case)")
    prompt.add_argument("--problem-field", help="field holding the problem text")
    prompt.add_argument("--trace-field", help="field holding the trace (model response)")
    add_options(prompt, PromptConfig)

    groups: dict[str, argparse._SubParsersAction] = {}
    for command in COMMANDS.values():  # the stage commands, from the one registry
        *group_words, word = command.words
        subparsers = commands
        for group in group_words:
            if group not in groups:
                grouped = commands.add_parser(group, help=f"{group} commands")
                groups[group] = grouped.add_subparsers(dest=f"{group}_command", required=True, metavar="COMMAND")
            subparsers = groups[group]
        stage = subparsers.add_parser(word, help=command.help, description=command.help)
        stage.set_defaults(stage=command.name)
        stage.add_argument("--config", help="YAML file of options (command-line options win)")
        add_options(stage, *command.config_classes())

    merge = commands.add_parser("merge", help="merge the run folders of revise --shard 0/n .. n-1/n")
    merge.add_argument("shards", nargs="+", help="the shard run folders")
    merge.add_argument("--output", required=True, help="merged run folder")

    report = commands.add_parser(
        "report", help="one self-contained HTML page of a run: its figures, plots and a trace viewer"
    )
    report.add_argument("run", help="run folder of revise, generate or eval, or a recipe's (retrosearch run)")
    report.add_argument("--output", help="the HTML file (default: RUN/report.html)")
    report.add_argument("--max-rows", type=int, default=5000, help="most rows in the trace viewer (a uniform sample)")
    report.add_argument("--max-mb", type=float, default=20.0, help="largest file; the viewer gets fewer rows to fit")

    run = commands.add_parser("run", help="run every stage of a YAML recipe, resumable, and print the table")
    run.add_argument("recipe", help="recipe YAML file")
    run.add_argument("--output", help="run folder (default: the recipe's)")
    run.add_argument("--dry-run", action="store_true", help="print the plan without loading any model")
    run.add_argument("--seed", type=int, help="repeat with this seed: every stage that takes one; run folder -seedN")

    demo = commands.add_parser("demo", help="the main job on the embedded organism, in minutes on a CPU")
    demo.add_argument("--output", default="runs/demo", help=OUTPUT_HELP)
    demo.add_argument("--problems", type=int, default=128, help="held-out organism problems to solve")
    demo.add_argument("--seed", type=int, default=0, help="global seed; per-request seeds derive from it")
    demo.add_argument("--overwrite", action="store_true", help="start the run folders afresh instead of resuming")
    return parser


def _run(args: argparse.Namespace) -> int:
    from retrosearch import config as configs

    if getattr(args, "stage", None):
        from retrosearch.stages.registry import COMMANDS

        options = configs.merged_options(args, getattr(args, "config", None))
        result = COMMANDS[args.stage].run(options)
        if args.stage in REPORTED:
            _print_report_command(getattr(COMMANDS[args.stage].build(options)[0], "output", None))
        if result.get("errors"):
            print(
                f"retrosearch: {result['errors']} row(s) failed (status 'error', with the reason in the output); "
                "rerun the same command to try them again",
                file=sys.stderr,
            )
            return EXIT_ROW_ERRORS
        return 0
    if args.command == "inspect":
        from retrosearch.data import FieldMap
        from retrosearch.inspect_traces import inspect_file, token_counter
        from retrosearch.tables import print_figures
        from retrosearch.trace import with_keywords

        count = token_counter(args.tokenizer)
        fields = FieldMap(args.problem_field, args.answer_field, args.trace_field, None, args.gold_from_trace)
        for path in args.files:
            figures = inspect_file(path, fields, with_keywords(args.keywords), count, args.limit)
            if args.json:
                print(json.dumps(figures))
            else:
                print_figures(f"retrosearch inspect — {path}", figures)
        return 0
    if args.command == "prompt":
        from retrosearch.config import build
        from retrosearch.data import FieldMap
        from retrosearch.engines.base import PromptConfig
        from retrosearch.inspect_prompt import rollout_prompt
        from retrosearch.trace import with_keywords

        shown = rollout_prompt(
            args.model,
            args.input,
            args.row,
            args.switch,
            build(PromptConfig, vars(args)),
            FieldMap(problem=args.problem_field, trace=args.trace_field, gold_from_trace=True),
            with_keywords(args.keywords),
            args.revision,
        )
        if args.ids:
            print(json.dumps(shown, ensure_ascii=False))
        else:
            sys.stdout.write(shown["text"])  # exactly the prompt: nothing added after it
        return 0
    if args.command == "merge":
        from retrosearch.revise import merge

        merge(args.shards, args.output)
        return 0
    if args.command == "run":
        from retrosearch.recipe import load_recipe, run_recipe

        print(run_recipe(args.recipe, args.output, args.dry_run, args.seed), end="")
        if not args.dry_run:
            _print_report_command(load_recipe(args.recipe, args.output, args.seed).output)
        return 0
    if args.command == "report":
        from retrosearch.report import write_report
        from retrosearch.tables import print_figures

        made = write_report(args.run, args.output, args.max_rows, args.max_mb)
        print_figures(f"retrosearch report — {args.run}", made)
        print(f"open it in a browser: file://{os.path.abspath(made['report'])}")
        return 0
    from retrosearch.demo import demo

    demo(args.output, args.problems, args.seed, args.overwrite)
    return 0


REPORTED = ("generate", "revise")  # stages whose run folder a report shows


def _print_report_command(folder: str | None) -> None:
    if folder:
        print(f"see the run in a browser: retrosearch report {shlex.quote(folder)}")


def _one_line(error: Exception) -> str:
    """An error as one line; a failed read or write (full disk, no permission) names its file."""
    if isinstance(error, OSError) and error.strerror and not isinstance(error, FileNotFoundError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}; free space or fix permissions, then rerun the same command to resume"
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    from retrosearch.data import DataError
    from retrosearch.stages.folder import RunError

    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (DataError, RunError, ValueError, OSError) as error:
        if os.environ.get("RETROSEARCH_DEBUG"):
            raise
        print(f"retrosearch: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("retrosearch: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
