"""The shape of the house: no import cycles, layers kept apart, one registry behind the CLI and recipes."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrosearch import cli_reference
from retrosearch.cli import _parser
from retrosearch.config import flat_fields, option
from retrosearch.stages.registry import COMMANDS, Command

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
        if name == "retrosearch.runner" or name.startswith("retrosearch.executors"):
            knows = {t for t in targets if t.startswith(("retrosearch.stages", "retrosearch.search"))}
            assert not knows, f"{name} knows a stage: {knows}"
        if name.startswith("retrosearch.data"):
            knows = {t for t in targets if t.startswith(("retrosearch.stages", "retrosearch.engines"))}
            assert not knows, f"{name}: reading and writing data knows no stage or engine: {knows}"


KIND_PACKAGES = {"stage": "retrosearch.stages.", "tool": "retrosearch.tools.", "pipeline": "retrosearch.pipelines."}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_lives_in_the_package_of_its_kind(name):
    command = COMMANDS[name]
    assert command.function.startswith(KIND_PACKAGES[command.kind]), command.function


def test_only_stages_use_the_run_folder_template():
    """A command that writes a run folder is a stage, and stages live in stages/."""
    for module, targets in import_graph().items():
        if "retrosearch.stages.template" in targets:
            assert module.startswith("retrosearch.stages."), f"{module} runs a stage outside stages/"


WRITER = "retrosearch.data.outputs"
NOT_OUTPUTS = {
    "retrosearch.stages.folder": "the run folder's lock file",
    "retrosearch._fixtures.cache": "a test model's build lock",
}  # model weights are written by their own libraries (save_pretrained, torch.save)


def writes(path: Path) -> list[str]:
    """The places in a module that write a file other than through the writer: write_text, write_bytes,
    json.dump, and open() in a writing mode."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if called in ("write_text", "write_bytes") or (called == "dump" and ast.unparse(node.func) == "json.dump"):
            found.append(f"{path.name}:{node.lineno} {called}")
        if called == "open":
            modes = [node.args[1]] if len(node.args) > 1 else [k.value for k in node.keywords if k.arg == "mode"]
            mode = modes[0].value if modes and isinstance(modes[0], ast.Constant) else "r"
            if set(mode) & set("wax+"):
                found.append(f"{path.name}:{node.lineno} open({mode!r})")
    return found


def test_every_file_a_command_writes_goes_through_the_writer():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name != WRITER and name not in NOT_OUTPUTS:
            assert not writes(path), f"{name} writes outside {WRITER}: {writes(path)}"


def test_the_write_finder_finds_writes(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\nopen(p, 'a')\np.write_text('x')\njson.dump({}, h)\nopen(p)\nopen(p, mode='rb')\n")
    assert writes(module) == ["m.py:2 open('a')", "m.py:3 write_text", "m.py:4 dump"]


def help_of(words: tuple[str, ...], capsys) -> str:
    with pytest.raises(SystemExit):
        _parser().parse_args([*words, "--help"])
    return capsys.readouterr().out


def shown_name(field) -> str:
    return field.name.upper() if field.metadata.get("positional") else f"--{field.name.replace('_', '-')}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_lists_every_field_of_its_configs_with_help_text(name, capsys):
    command = COMMANDS[name]
    shown = help_of(command.words, capsys)
    for cls in command.config_classes():
        for field, _ in flat_fields(cls):
            assert shown_name(field) in shown, f"{name}: {shown_name(field)} missing from --help"
            assert field.metadata["help"].split()[0] in shown


def test_recipes_and_the_command_line_reach_the_same_commands():
    from retrosearch.pipelines.recipe import load_recipe

    for path in Path(__file__).parent.parent.glob("recipes/**/*.yaml"):
        for stage in load_recipe(str(path)).stages:
            assert COMMANDS[stage.command].kind == "stage"


def test_the_cli_reference_lists_every_command_and_option():
    page = cli_reference.markdown()
    for command in COMMANDS.values():
        section = cli_reference.command_section(command)
        assert section in page
        assert f"### `retrosearch {' '.join(command.words)}`" in section
        for cls in command.config_classes():
            for field, _ in flat_fields(cls):
                assert f"| `{shown_name(field)}` |" in section, f"{command.name}: {field.name}"


@dataclass(frozen=True)
class ToyConfig:
    """A stage that exists only in this test: registered, it must reach every surface with no other file touched."""

    input: str = option("", "toy input file")
    output: str = option("runs/toy", "toy run folder")
    shout_loudly: bool = option(False, "a toy flag nobody else has")


def toy(config: ToyConfig) -> dict:
    return {"output": config.output, "loud": config.shout_loudly}


def test_a_stage_added_to_the_registry_reaches_help_recipes_and_the_reference(monkeypatch, tmp_path, capsys):
    from retrosearch.cli import main
    from retrosearch.pipelines.recipe import load_recipe, plan

    toy_command = Command("toy", ("toy",), "stage", f"{__name__}:toy", (f"{__name__}:ToyConfig",), "a toy stage")
    monkeypatch.setitem(COMMANDS, "toy", toy_command)

    assert "a toy stage" in help_of((), capsys)
    assert "--shout-loudly" in help_of(("toy",), capsys)

    recipe = tmp_path / "toy.yaml"
    recipe.write_text("stages:\n  - name: t\n    command: toy\n    options: {shout-loudly: true}\n")
    (step,) = plan(load_recipe(str(recipe), str(tmp_path / "run")))
    assert step[:2] == ("t", "toy") and step[2]["shout_loudly"] is True

    assert "retrosearch toy" in cli_reference.markdown() and "--shout-loudly" in cli_reference.markdown()
    assert main(["toy", "--shout-loudly", "--output", str(tmp_path / "o")]) == 0


def test_the_public_api_resolves_from_the_package():
    import retrosearch

    for name in retrosearch.__all__:
        assert getattr(retrosearch, name).__name__ == name
    with pytest.raises(AttributeError):
        retrosearch.no_such_thing  # noqa: B018
