"""Config dataclasses as command-line options and YAML recipes: defaults < YAML < command line."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_options(parser: argparse.ArgumentParser, *classes: type, help_text: dict[str, str] | None = None) -> None:
    """One option per dataclass field; values left unset stay out of the namespace."""
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        group = parser.add_argument_group(cls.__name__)
        for field in dataclasses.fields(cls):
            if field.name in seen:
                raise ValueError(f"option {field.name} is defined twice")
            seen.add(field.name)
            annotation = _unwrap_optional(hints[field.name])
            default = field.default if field.default is not dataclasses.MISSING else None
            described = (help_text or {}).get(field.name, "").replace("%", "%%")  # argparse formats help with %
            kwargs: dict[str, Any] = {
                "default": argparse.SUPPRESS,
                "help": described if "default" in described else f"{described} (default: {default})".strip(),
            }
            if annotation is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif typing.get_origin(annotation) is tuple:
                kwargs["nargs"] = "+"
            elif typing.get_origin(annotation) is Literal:
                kwargs["choices"] = typing.get_args(annotation)
            else:
                kwargs["type"] = annotation
            group.add_argument(_option(field.name), dest=field.name, **kwargs)


NOT_OPTIONS = ("command", "config", "organism_command")


def read_yaml(path: str) -> Any:
    """A YAML file's content; broken YAML is one line naming the file, line and column."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise ValueError(f"{path}{where}: not valid YAML ({problem}); fix the file") from None


def merged_options(namespace: argparse.Namespace, recipe: str | None = None) -> dict[str, Any]:
    """Options from a YAML file (if any), overridden by those given on the command line."""
    values: dict[str, Any] = {}
    if recipe:
        loaded = read_yaml(recipe) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{recipe}: expected a mapping of option names to values")
        values.update({key.replace("-", "_"): value for key, value in loaded.items()})
    values.update({key: value for key, value in vars(namespace).items() if key not in NOT_OPTIONS})
    return values
