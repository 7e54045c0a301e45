"""The shape of the house: no import cycles, layers kept apart, one registry behind the CLI and recipes."""

import ast
from pathlib import Path

import pytest

from retrosearch.cli import _parser
from retrosearch.config import flat_fields
from retrosearch.stages.registry import COMMANDS

PACKAGE = Path(__file__).parent.parent / "src" / "retrosearch"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, lazy imports inside functions included."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 30  # the whole package was read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_layers_stay_apart():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("retrosearch.search"):
            engines = {t for t in targets if t.startswith("retrosearch.engines")}
            assert engines <= {"retrosearch.engines.base"}, f"{name} imports an engine: {engines}"
        if name.startswith("retrosearch.engines"):
            assert "retrosearch.trace" not in targets, f"{name} knows about traces"
        if name in ("retrosearch.distributed", "retrosearch.runner") or name.startswith("retrosearch.executors"):
            stages = {"generate", "revise", "evaluate", "sft", "selection", "search.retro_search"}
            knows = {t for t in targets if t.removeprefix("retrosearch.") in stages}
            assert not knows, f"{name} knows a stage: {knows}"


def help_of(words: tuple[str, ...], capsys) -> str:
    with pytest.raises(SystemExit):
        _parser().parse_args([*words, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_lists_every_field_of_its_configs_with_help_text(name, capsys):
    command = COMMANDS[name]
    shown = help_of(command.words, capsys)
    for cls in command.config_classes():
        for field, _ in flat_fields(cls):
            assert f"--{field.name.replace('_', '-')}" in shown, f"{name}: --{field.name} missing from --help"
            assert field.metadata["help"].split()[0] in shown


def test_recipes_and_the_command_line_reach_the_same_commands():
    from retrosearch.recipe import load_recipe

    for path in Path(__file__).parent.parent.glob("recipes/**/*.yaml"):
        for stage in load_recipe(str(path)).stages:
            assert stage.command in COMMANDS
