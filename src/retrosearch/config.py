"""Config dataclasses as command-line options and YAML recipes: defaults < YAML < command line.

Every config field carries its help text (`option(default, "help")`); a field whose type is itself a config
dataclass (the sampling settings) is nested in Python and in the manifest, and flat on the command line and in
recipes (`--temperature`, `temperature:`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml


def option(default: Any, help: str, *, positional: bool = False, speed_only: bool = False) -> Any:
    """A config field with its help text (shown by `--help`). A `positional` field is given without its name on
    the command line (`retrosearch report RUN`); a `speed_only` one changes speed, never results, so a run folder
    resumes under another value of it."""
    metadata = {"help": help, "positional": positional, "speed_only": speed_only}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def overwrite_option() -> Any:
    """The `--overwrite` field every run folder's config has."""
    return option(False, "start the run folder afresh instead of resuming", speed_only=True)


def speed_only(*configs: Any) -> tuple[str, ...]:
    """The names of the speed-only fields of config classes or instances, nested configs' included."""
    return tuple(
        field.name
        for config in configs
        for field, _ in flat_fields(config if isinstance(config, type) else type(config))
        if field.metadata.get("speed_only")
    )


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def at_least(config: Any, minimum: float, *names: str) -> None:
    """Refuse, in one line naming the option, a value below `minimum` (None means unset and passes)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ValueError(f"{_option(name)} must be at least {minimum} (got {value})")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def flat_fields(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    """(field, annotation) of every option of a config class, nested configs' fields in place of them."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        annotation = _unwrap_optional(hints[field.name])
        if dataclasses.is_dataclass(annotation):
            yield from flat_fields(annotation)
        else:
            yield field, annotation


def flat_values(*configs: Any) -> dict[str, Any]:
    """Every option's value of config instances, nested configs' in place of them."""
    values: dict[str, Any] = {}
    for config in configs:
        for name, value in vars(config).items():
            if dataclasses.is_dataclass(value):
                values.update(flat_values(value))
            else:
                values[name] = value
    return values


def option_names(*classes: type) -> set[str]:
    return {field.name for cls in classes for field, _ in flat_fields(cls)}


def add_options(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One option per config field (nested configs flattened); values left unset stay out of the namespace."""
    seen: set[str] = set()
    for cls in classes:
        group = parser.add_argument_group(cls.__name__)
        for field, annotation in flat_fields(cls):
            if field.name in seen:
                raise ValueError(f"option {field.name} is defined twice")
            seen.add(field.name)
            default = field_default(field)
            if not field.metadata.get("help"):
                raise ValueError(f"{cls.__name__}.{field.name} has no help text; declare it with option()")
            described = field.metadata["help"].replace("%", "%%")  # argparse formats help with %
            kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": described}
            if field.metadata.get("positional"):
                nargs = "+" if typing.get_origin(annotation) is tuple else None
                group.add_argument(field.name, nargs=nargs, metavar=field.name.upper(), **kwargs)
                continue
            if "default" not in described:
                kwargs["help"] = f"{described} ({'required' if default == '' else f'default: {default}'})"
            if annotation is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif typing.get_origin(annotation) is tuple:
                kwargs["nargs"] = "+"
            elif typing.get_origin(annotation) is Literal:
                kwargs["choices"] = typing.get_args(annotation)
            else:
                kwargs["type"] = annotation
            group.add_argument(_option(field.name), dest=field.name, **kwargs)


def build(cls: type, options: dict[str, Any]) -> Any:
    """An instance of a config class from flat options (those it does not know are ignored)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        annotation = _unwrap_optional(hints[field.name])
        if dataclasses.is_dataclass(annotation):
            values[field.name] = build(annotation, options)
        elif field.name in options:
            value = options[field.name]
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def build_all(options: dict[str, Any], *classes: type) -> list[Any]:
    """The config classes of a command from its options; an option none of them knows is refused."""
    unknown = sorted(set(options) - option_names(*classes))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}")
    return [build(cls, options) for cls in classes]


NOT_OPTIONS = ("command", "config", "stage")  # parser bookkeeping; "<group>_command" too


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
    values.update({k: v for k, v in vars(namespace).items() if k not in NOT_OPTIONS and not k.endswith("_command")})
    return values
