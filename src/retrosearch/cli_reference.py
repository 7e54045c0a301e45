"""The CLI reference as Markdown, generated from the registry (the manual's page is built from it, so it cannot
drift from the commands): every command, its words, what it does, and each option with its default and help."""

from __future__ import annotations

import typing
from typing import Any, Literal

from retrosearch.config import field_default, flat_fields
from retrosearch.stages.registry import COMMANDS, KINDS, Command

KIND_TITLES = {
    "stage": "Stages: each writes a run folder, resumable (and may be a recipe's stage)",
    "tool": "Tools: read and show, no run folder",
    "pipeline": "Pipelines: chain stages",
}


def markdown() -> str:
    """The whole reference page."""
    parts = [
        "# CLI reference\n",
        "Generated from the command registry (`retrosearch.stages.registry`) when the manual is built. Every "
        "option can also come from a YAML file (`--config FILE`, names as below without the dashes); options "
        "given on the command line win. Exit codes: 0 done, 2 bad input or a refused run (one line says why), "
        "3 finished with failed rows (rerun to retry them), 130 interrupted (rerun to resume), 141 the reader of its "
        "output went away.\n",
    ]
    for kind in KINDS:
        chosen = [command for command in COMMANDS.values() if command.kind == kind]
        if chosen:
            parts.append(f"## {KIND_TITLES[kind]}\n")
            parts += [command_section(command) for command in chosen]
    return "\n".join(parts)


def command_section(command: Command) -> str:
    classes = command.config_classes()
    positionals = [field.name.upper() for cls in classes for field, _ in flat_fields(cls) if _positional(field)]
    usage = " ".join(["retrosearch", *command.words, *positionals, "[OPTIONS]"])
    lines = [f"### `retrosearch {' '.join(command.words)}`\n", f"{command.help[0].upper()}{command.help[1:]}.\n"]
    lines += ["```", usage, "```\n"]
    for cls in classes:
        rows = [_row(field, annotation) for field, annotation in flat_fields(cls)]
        lines += [f"**{cls.__name__}**\n", "| option | default | what it does |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def _positional(field: Any) -> bool:
    return bool(field.metadata.get("positional"))


def _row(field: Any, annotation: Any) -> str:
    name = field.name.upper() if _positional(field) else "--" + field.name.replace("_", "-")
    value = field_default(field)
    default = "(required)" if _positional(field) or value == "" else f"`{_shown(value)}`"
    described = field.metadata["help"]
    if typing.get_origin(annotation) is Literal:
        described += f"; one of: {', '.join(f'`{choice}`' for choice in typing.get_args(annotation))}"
    if _speed(field):
        described += " *Speed only: a run resumes under another value.*"
    return f"| `{name}` | {default} | {_cell(described)} |"


def _speed(field: Any) -> bool:
    return bool(field.metadata.get("speed_only"))


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
