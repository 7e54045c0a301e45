"""A Griffe extension for the manual's API page: a config field declared `option(default, "help")` gets its help
text as its docstring, so the page shows each field with the words `--help` shows (written once, in the code)."""

from __future__ import annotations

import ast
from typing import Any

import griffe


class OptionHelp(griffe.Extension):
    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        call = getattr(node, "value", None)
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "option"):
            return
        if len(call.args) > 1 and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
            attr.docstring = griffe.Docstring(call.args[1].value, parent=attr)
