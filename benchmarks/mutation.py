"""Mutation score per module: runs mutmut once per module group, each against the fast tests that pin that
group, and prints the killed share per module as JSON, with the surviving mutants by name.

    python benchmarks/mutation.py                  # every group, then the table (reruns reuse mutmut's cache)
    python benchmarks/mutation.py --group engine   # one group (repeatable)
    python benchmarks/mutation.py --report         # only the table, from the last runs

Why groups: mutmut runs, for each mutant, the selected tests that call the mutated function. With one global
selection a mutant of the in-order writer or of the transformers engine runs every organism engine test that
happens to write rows (about a minute a mutant here); a group names the test files that pin its modules, and
leaves out a test that takes seconds where a faster one pins the same code (each exclusion says which).

Each group runs in `.mutation/<group>/`: links to src/, tests/ and recipes/, and a pyproject.toml holding the
project's pytest settings, the shared [tool.mutmut] settings and the group's modules and tests; mutmut keeps
its cache (`mutants/`) there. Killed share = (killed + timeout) / (killed + timeout + survived). Mutants of code
that runs in another process (math-verify inside the answer checker's pool) are tested by calling that code in
process. Targets from the tests issues: >= 90% on search/, seeds.py and trace.py, >= 85% on stages/, the
engine's batching and caches, the in-order writer and the report's run reader, >= 80% on the others.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli where the standard library has no TOML reader
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")
LINKED = ("src", "tests", "recipes")
TARGETS = {
    "retrosearch.search": 0.90,
    "retrosearch.seeds": 0.90,
    "retrosearch.trace": 0.90,
    "retrosearch.stages": 0.85,
    "retrosearch.engines.transformers_engine": 0.85,
    "retrosearch.engines.kv": 0.85,
    "retrosearch.engines.prefix_cache": 0.85,
    "retrosearch.data.outputs": 0.85,
    "retrosearch.tools.report.runs": 0.85,
}
LINE = re.compile(r"^\s*(?P<name>\S+)__mutmut_\d+: (?P<status>.+)$")


@dataclass(frozen=True)
class Group:
    modules: tuple[str, ...]
    tests: tuple[str, ...]


GROUPS = {
    "core": Group(
        modules=(
            "src/retrosearch/search/*",
            "src/retrosearch/trace.py",
            "src/retrosearch/seeds.py",
            "src/retrosearch/text.py",
            "src/retrosearch/answers.py",
            "src/retrosearch/runner.py",
            "src/retrosearch/engines/watch.py",
            "src/retrosearch/engines/banning.py",
            "src/retrosearch/engines/streaming.py",
            "src/retrosearch/prompting.py",
            "src/retrosearch/stages/eval.py",
        ),
        tests=(
            "tests/test_retro_search.py",
            "tests/test_properties.py",
            "tests/test_trace.py",
            "tests/test_answers.py",
            "tests/test_runner.py",
            "tests/test_stops_and_bans.py",
            "tests/test_streaming.py",
            "tests/test_selection.py",
            "tests/test_prompting.py",
            "tests/test_metrics.py",
            "tests/test_seeds.py",
            "tests/test_evaluate.py",
        ),
    ),
    "engine": Group(
        modules=(
            "src/retrosearch/engines/transformers_engine.py",
            "src/retrosearch/engines/kv.py",
            "src/retrosearch/engines/prefix_cache.py",
        ),
        tests=(
            "tests/test_kv_caches.py",
            "tests/test_engine.py",
            "tests/test_engine_batching.py",
            "tests/test_sampling.py",
            "tests/test_scheduling.py",
            # 7 s: the organism's own distribution; the crafted-logits cases pin the same sampling code
            "--deselect=tests/test_sampling.py::test_the_organism_engine_samples_its_own_next_token_distribution",
            # 14 s: SmolLM2 itself; its random-weight twin (the tiny-llama case) pins the same batching code
            "--deselect=tests/test_engine_batching.py::"
            "test_rows_joining_and_leaving_a_batch_decode_as_plain_generate_does[smollm2]",
        ),
    ),
    "outputs": Group(
        modules=(
            "src/retrosearch/data/outputs.py",
            "src/retrosearch/stages/generate.py",
            "src/retrosearch/stages/merge.py",
        ),
        tests=(
            "tests/test_generate.py",
            "tests/test_data.py",
            "tests/test_runner.py",
            "tests/test_revise_scripted.py",
            "tests/test_adversarial.py",
            "tests/test_seeds.py",
            "tests/test_metrics.py",
            "tests/test_selection.py",
            "tests/test_prompting.py",
        ),
    ),
    "stages": Group(
        modules=(
            "src/retrosearch/stages/folder.py",
            "src/retrosearch/stages/registry.py",
            "src/retrosearch/stages/revise.py",
            "src/retrosearch/stages/select.py",
            "src/retrosearch/stages/sft.py",
            "src/retrosearch/stages/teacher.py",
            "src/retrosearch/stages/template.py",
            "src/retrosearch/stages/organism_train.py",
        ),
        tests=(
            "tests/test_stage_template.py",
            "tests/test_revise_scripted.py",
            "tests/test_revise.py",
            "tests/test_adversarial.py",
            "tests/test_cli.py",
            "tests/test_sft.py",
        ),
    ),
    "report": Group(
        modules=("src/retrosearch/tools/report/runs.py",),
        tests=(
            "tests/test_report.py",
            # 23 s: 100,000 rows; test_the_viewers_rows_are_a_uniform_sample_of_a_large_run pins the same reader
            "--deselect=tests/test_report.py::test_a_100k_row_run_gives_a_bounded_report_that_opens",
        ),
    ),
}


def toml_table(name: str, settings: dict) -> list[str]:
    """A TOML table of string, boolean, number and string-list settings (JSON writes each of those as TOML does)."""
    return [
        f"[{name}]",
        *(
            f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}"
            for key, value in settings.items()
        ),
    ]


def prepare(name: str, group: Group) -> Path:
    """The group's folder: the project's code and tests by link, and a pyproject.toml of its own."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = folder / entry
        if not link.is_symlink():
            link.symlink_to(ROOT / entry, target_is_directory=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mutmut = {
        **project["tool"]["mutmut"],
        "only_mutate": group.modules,
        "pytest_add_cli_args_test_selection": group.tests,
    }
    lines = [
        f"# written by benchmarks/mutation.py for the group {name!r}; edit GROUPS there",
        *toml_table("tool.pytest.ini_options", project["tool"]["pytest"]["ini_options"]),
        "",
        *toml_table("tool.mutmut", mutmut),
        "",
    ]
    (folder / "pyproject.toml").write_text("\n".join(lines), encoding="utf-8")
    return folder


def module_of(function: str) -> str:
    """'retrosearch.engines.watch.x_stop_end' -> 'retrosearch.engines.watch' (methods are 'xǁClassǁname')."""
    return function.rsplit(".", 1)[0]


def target_for(module: str) -> float:
    return next((share for prefix, share in TARGETS.items() if module.startswith(prefix)), 0.80)


def results(folder: Path) -> dict[str, dict[str, list[str]]]:
    listing = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"], cwd=folder, capture_output=True, text=True, check=True
    ).stdout
    by_module: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in listing.splitlines():
        match = LINE.match(line)
        if match:
            name = line.strip().split(":")[0]
            by_module[module_of(match["name"])][match["status"].strip()].append(name)
    return by_module


def table(group: str, by_module: dict[str, dict[str, list[str]]]) -> dict:
    modules = {}
    for module, statuses in sorted(by_module.items()):
        killed = len(statuses.get("killed", []))
        survived = statuses.get("survived", [])
        timeouts = len(statuses.get("timeout", []))
        judged = killed + len(survived) + timeouts
        share = (killed + timeouts) / judged if judged else 0.0
        modules[module] = {
            "group": group,
            "mutants": sum(map(len, statuses.values())),
            "killed": killed,
            "timeout": timeouts,
            "survived": len(survived),
            "not_covered": len(statuses.get("no tests", [])),
            "killed_share": round(share, 3),
            "target": target_for(module),
            "target_met": share >= target_for(module),
            "survivors": survived,
        }
    return modules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only print the table of the last runs")
    parser.add_argument("--group", action="append", choices=sorted(GROUPS), help="run only this group")
    args = parser.parse_args()
    chosen = args.group or list(GROUPS)
    environment = {
        **os.environ,
        "RETROSEARCH_SHARED": os.environ.get("RETROSEARCH_SHARED", str(ROOT.parent / "shared")),
        # one torch thread per mutmut child: children run side by side, one per core, and torch's threads
        # waiting on each other across busy cores cost several times the work itself
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    modules: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for name in chosen:
        folder = WORK / name
        if not args.report:
            started = time.monotonic()
            subprocess.run(
                [str(MUTMUT), "run"],
                cwd=prepare(name, GROUPS[name]),
                check=True,
                stdout=subprocess.DEVNULL,
                env=environment,
            )
            seconds[name] = round(time.monotonic() - started, 1)
        if (folder / "mutants").is_dir():
            modules.update(table(name, results(folder)))
    report = {
        "modules": modules,
        "all_targets_met": all(m["target_met"] for m in modules.values()),
        "wall_seconds_per_group": seconds,
        "wall_seconds": round(sum(seconds.values()), 1),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
