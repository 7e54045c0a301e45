"""The `retrosearch` command: one sub-command per registry entry, its options from the entry's config classes.
It only parses options, loads configs and calls the Python API."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

EXIT_ROW_ERRORS = 3  # the run finished, but some rows failed: 2 is bad input, 130 an interruption


def _parser() -> argparse.ArgumentParser:
    from retrosearch.config import add_options
    from retrosearch.stages.registry import COMMANDS

    parser = argparse.ArgumentParser(
        prog="retrosearch",
        description="Retro-Search: revise reasoning traces to be shorter and still correct.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for command in COMMANDS.values():
        *group_words, word = command.words
        subparsers = commands
        for group in group_words:
            if group not in groups:
                grouped = commands.add_parser(group, help=f"{group} commands")
                groups[group] = grouped.add_subparsers(dest=f"{group}_command", required=True, metavar="COMMAND")
            subparsers = groups[group]
        sub = subparsers.add_parser(word, help=command.help, description=command.help)
        sub.set_defaults(stage=command.name)
        sub.add_argument("--config", help="YAML file of options (command-line options win)")
        add_options(sub, *command.config_classes())
    return parser


def _run(args: argparse.Namespace) -> int:
    from retrosearch.config import merged_options
    from retrosearch.stages.registry import COMMANDS

    command = COMMANDS[args.stage]
    configs = command.build(merged_options(args, args.config))
    result = command.call(configs)
    if command.reported:
        folder = result["output"] if "output" in result else getattr(configs[0], "output", None)
        if folder:
            print(f"see the run in a browser: retrosearch report {shlex.quote(folder)}")
    if result.get("errors"):
        print(
            f"retrosearch: {result['errors']} row(s) failed (status 'error', with the reason in the output); "
            "rerun the same command to try them again",
            file=sys.stderr,
        )
        return EXIT_ROW_ERRORS
    return 0


def _one_line(error: Exception) -> str:
    """An error as one line; a failed read or write (full disk, no permission) names its file."""
    if isinstance(error, OSError) and error.strerror and not isinstance(error, FileNotFoundError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}; free space or fix permissions, then rerun the same command to resume"
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    from retrosearch.data.inputs import DataError
    from retrosearch.stages.folder import RunError

    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:  # the reader went away (`retrosearch inspect … | head`): nothing to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (DataError, RunError, ValueError, OSError) as error:
        if os.environ.get("RETROSEARCH_DEBUG"):
            raise
        print(f"retrosearch: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("retrosearch: interrupted; rerun the same command to resume", file=sys.stderr)
        if argv is None:  # the command itself: every `finally` has run and every row is on disk, so exit now
            # rather than tear the interpreter down under the engine's daemon thread, still decoding: that race
            # aborted the process (exit -6 instead of 130) once in a full test run here
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


if __name__ == "__main__":
    sys.exit(main())
