"""Mutation score per module: runs mutmut once per module group, each against the fast tests that pin that
group, and prints the killed share per module as JSON, with the surviving mutants by name.

    python benchmarks/mutation.py                  # every group, then the table (reruns reuse mutmut's cache)
    python benchmarks/mutation.py --group engine   # one group (repeatable)
    python benchmarks/mutation.py --report         # only the table, from the last runs

Why groups: mutmut runs, for each mutant, the selected tests that call the mutated function. With one global
selection a mutant of the in-order writer or of the transformers engine runs every organism engine test that
happens to write rows (about a minute a mutant here); a group names the test files that pin its modules, and
leaves out a test that takes seconds where a faster one pins the same code (each exclusion says which).

Time: from an empty cache the groups took 37 minutes on 2 cores in all, two at a time (each group's time is in
docs/testing.md; each mutant's wall time is summed per module from mutmut's log): a mutant costs a fresh pytest
process running the tests that call its function, fastest first, and a survivor runs all of them. mutmut keeps
results per function, so a rerun redoes the mutants of the functions whose code changed; survivors that new tests
were written for are rerun by name (`cd .mutation/GROUP && RETROSEARCH_EQUIVALENT_MUTANTS=$PWD/equivalent-mutants.json
mutmut run NAME ...`: the path absolute, as mutmut runs the tests from mutants/).

Each group runs in `.mutation/<group>/`: links to src/, tests/ and recipes/, and a pyproject.toml holding the
project's pytest settings, the shared [tool.mutmut] settings and the group's modules and tests; mutmut keeps
its cache (`mutants/`) there. Survivors reviewed as equivalent are listed in benchmarks/mutation_equivalents.toml by
function and change (a mutant's number moves whenever its function changes; its change does not): their processes
stop before any test (tests/conftest.py) and mutmut reports them "skipped", counted apart as
reviewed_equivalent_not_run; an entry no mutant matched any more is printed under equivalents_unmatched (results
mutmut cached before a change to the list keep their status: remove `mutants/` for a fresh judgement).
Killed share = (killed + timeout) / (killed + timeout + survived). Mutants of code
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
from concurrent.futures import ThreadPoolExecutor
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
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalents.toml"
sys.path.insert(0, str(ROOT / "tests"))
from mutants import EQUIVALENTS_ENV, change_of, split_name  # noqa: E402  (the tests' helper, shared with conftest)

LINE = re.compile(r"^\s*(?P<name>\S+)__mutmut_\d+: (?P<status>.+)$")
COMPLETED = re.compile(r"Completed (?P<name>\S+)__mutmut_\d+: exit=-?\d+ \((?P<seconds>[\d.]+)s\)")
LOG = Path("mutants") / "mutmut-debug.log"  # where mutmut's fork server logs each mutant's wall time
TOO_SLOW = Path("mutants") / "mutants-too-slow.log"  # mutants a test failed by its time limit (tests/conftest.py)


@dataclass(frozen=True)
class Group:
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    # lines whose surviving mutants were each reviewed as equivalent (docs/testing.md) and that cost the most to
    # judge again (a survivor runs every test that reaches its function): mutmut leaves them unmutated. Each is a
    # regular expression that must match exactly one line of the group's modules.
    equivalent_lines: tuple[str, ...] = ()


# longest first (their cold run's wall time): the lanes take them in this order
GROUPS = {
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
            "src/retrosearch/stages/cut.py",
        ),
        tests=(
            "tests/test_stage_template.py",
            "tests/test_run_folder.py",
            "tests/test_small_stages.py",
            "tests/test_selection.py",
            "tests/test_organism_task.py::test_organism_teacher_on_the_command_line",
            "tests/test_revise_scripted.py",
            "tests/test_revise.py",
            "tests/test_adversarial.py",
            "tests/test_cli.py",
            "tests/test_sft.py",
            "tests/test_data.py",
            "tests/test_architecture.py",
            "tests/test_cut.py",
            "--deselect=tests/test_cut.py::test_on_the_real_traces_every_cut_keeps_a_correct_final_answer_and_is_shorter",
            # 2 s each: static checks over the source files (imports, layers, writers), not what a stage does
            "--deselect=tests/test_architecture.py::test_the_import_graph_has_no_cycles",
            "--deselect=tests/test_architecture.py::test_layers_stay_apart",
            "--deselect=tests/test_architecture.py::test_only_stages_use_the_run_folder_template",
            "--deselect=tests/test_architecture.py::test_every_file_a_command_writes_goes_through_the_writer",
            # 6 s: waits out an answer check's deadline (the checker is the core group's); 1-3 s: `inspect`, a tool
            "--deselect=tests/test_revise_scripted.py::test_an_answer_check_that_never_ends_skips_its_row_alone",
            "--deselect=tests/test_adversarial.py::test_inspect_takes_any_input_without_a_traceback[random.parquet]",
            # 10-32 s each: the organism revising real traces end to end; the scripted engine's tests pin the
            # same stage code (resumption, sharding, the bound) in well under a second each
            "--deselect=tests/test_revise.py::test_killed_run_resumes_to_the_same_output",
            "--deselect=tests/test_revise.py::test_revised_traces_stay_correct_and_bound_changes_nothing_but_work",
            "--deselect=tests/test_revise.py::test_shards_merge_into_the_unsharded_output",
            # 7 s: a subprocess killed by SIGINT pins the runner's signal handling
            "--deselect=tests/test_adversarial.py::test_ctrl_c_ends_a_run_with_one_line",
        ),
    ),
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
            "tests/test_cut.py",
            # 14 s: the cut over the 570 real traces; the hand-made rounds and the property test pin the algorithm
            "--deselect=tests/test_cut.py::test_on_the_real_traces_every_cut_keeps_a_correct_final_answer_and_is_shorter",
            # 4.5 s: the stage's command line in every layout (the stages group's); the algorithm's tests pin the cut
            "--deselect=tests/test_cut.py::test_cut_on_the_command_line_writes_revise_rows_in_each_inputs_own_layout",
        ),
        equivalent_lines=(
            # the answer checker's worker plumbing (each survivor 25-37 s: the tests that reach it start workers):
            # the starter pool's size and thread name, the start method, workers as daemons or not, a start-up flag
            # of None for False, the join timeout after a kill, the checker's pid as None (one extra reset)
            r"_starter = \(os\.getpid\(\), ThreadPoolExecutor\(max_workers=1, thread_name_prefix=",
            r'context = multiprocessing\.get_context\("spawn"\)',
            r"self\.process = context\.Process\(target=_serve, args=\(child, os\.getpid\(\)\), daemon=True\)",
            r"^        self\.ready = False$",
            r"self\.process\.join\(timeout=5\)",
            r"^        self\._pid = os\.getpid\(\)$",
            # math-verify's logger's name; its own timeouts left on (the worker's deadline is the one relied on);
            # the $...$ wrapping condition (math-verify parses $$x$$, $x$ and \boxed{x} alike): 8-12 s each
            r'logging\.getLogger\("math_verify"\)\.setLevel',
            r'return answer if "\$" in answer or "\\\\boxed" in answer else',
            r"gold_parsed = parse\(wrap\(gold\), parsing_timeout=None\)",
            r"predicted_parsed = parse\(wrap\(predicted\), parsing_timeout=None\)",
            r"return bool\(verify\(gold_parsed, predicted_parsed, timeout_seconds=None\)\)",
            # the runner: Task.cancelling's fallback for Python 3.10, the progress bar's refresh, the callback that
            # only frees finished tasks' memory (12-17 s each)
            r'getattr\(task, "cancelling", lambda: 1\)',
            r"progress\.set_postfix\(postfix\(\), refresh=False\)",
            r"task\.add_done_callback\(running\.discard\)",
            # the byte order int.from_bytes takes by default since Python 3.11 (18 s)
            r'return int\.from_bytes\(digest\[:8\], "big"\) >> 1',
            # another anchor text, with special tokens, or always stripped: every tokenizer decodes anchor + token
            # starting with the anchor's own text (8-10 s each)
            r'anchor = tokenizer\("a", add_special_tokens=False\)',
            r"texts\.append\(joined\[len\(anchor_text\) :\] if joined\.startswith\(anchor_text\) else joined\)",
            # None for False (both falsy), 15 s
            r"^        require_gold=False,$",
        ),
    ),
    "engine": Group(
        modules=(
            "src/retrosearch/engines/transformers_engine.py",
            "src/retrosearch/engines/kv.py",
            "src/retrosearch/engines/prefix_cache.py",
            "src/retrosearch/engines/threads.py",
        ),
        tests=(
            "tests/test_kv_caches.py",
            "tests/test_engine.py",
            "tests/test_engine_batching.py",
            "tests/test_sampling.py",
            "tests/test_scheduling.py",
            "tests/test_threads.py",
            # a spinning process and a whole revise: timing-bound and slow; the faked measurements and the engine's
            # own threads test pin the same code
            "--deselect=tests/test_threads.py::test_a_core_kept_busy_by_another_process_is_seen_busy",
            "--deselect=tests/test_threads.py::test_revised_rows_are_the_same_whatever_the_threads",
            # the SmolLM2 case of the batched prefill (its twin's case pins the same code)
            "--deselect=tests/test_engine_batching.py::"
            "test_bpe_prompts_prefilled_together_give_the_tokens_prefilled_one_at_a_time[smollm2]",
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
            # 3-13 s each: the real R1 tokenizer over the shared traces pins prompting (the core group's);
            # generate's prompts are pinned by the organism's and the scripted engine's tests above
            "--deselect=tests/test_prompting.py::test_rollout_prompts_are_token_exact_at_every_switch_of_the_real_traces",
            "--deselect=tests/test_prompting.py::test_the_r1_distill_template_shipped_and_opening_gives_one_think",
            "--deselect=tests/test_prompting.py::test_an_openthoughts_row_with_the_sky_t1_system_prompt",
            # 7 s: a subprocess killed by SIGINT pins the runner's signal handling, not what it writes
            "--deselect=tests/test_adversarial.py::test_ctrl_c_ends_a_run_with_one_line",
            # 5 s: waits out an answer check's deadline; the appender's error rows are pinned by faster tests
            "--deselect=tests/test_revise_scripted.py::test_an_answer_check_that_never_ends_skips_its_row_alone",
            # 5 s: one request at a time; the concurrent case ([16]) pins the same seeds through generate
            "--deselect=tests/test_seeds.py::test_organism_samples_differ_within_and_across_problems_and_reproduce[1]",
        ),
    ),
    "report": Group(
        modules=("src/retrosearch/tools/report/runs.py",),
        tests=(
            "tests/test_report_runs.py",
            # the rest of test_report.py renders pages in Chromium from an organism run (19 s to set up, in every
            # mutant's process): it pins the page, and the reader's figures are compared exactly on hand-made runs
            "tests/test_report.py::test_the_viewers_rows_are_a_uniform_sample_of_a_large_run",
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


def check_equivalent_lines(name: str, group: Group) -> None:
    """Each reviewed line's pattern matches exactly one line of the group's modules: one that matched none or
    several after a change would leave other code unmutated, unnoticed."""
    lines = [
        line
        for pattern in group.modules
        for path in sorted(ROOT.glob(pattern))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    for pattern in group.equivalent_lines:
        found = sum(bool(re.search(pattern, line)) for line in lines)
        if found != 1:
            sys.exit(f"benchmarks/mutation.py: group {name!r}: {pattern!r} matches {found} lines, not 1: update it")


def prepare(name: str, group: Group) -> Path:
    """The group's folder: the project's code and tests by link, and a pyproject.toml of its own."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = folder / entry
        if not link.is_symlink():
            link.symlink_to(ROOT / entry, target_is_directory=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    check_equivalent_lines(name, group)
    mutmut = {
        **project["tool"]["mutmut"],
        "only_mutate": group.modules,
        "pytest_add_cli_args_test_selection": group.tests,
        "do_not_mutate_patterns": group.equivalent_lines,
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


def reviewed_equivalents() -> dict[str, list[dict[str, str]]]:
    """benchmarks/mutation_equivalents.toml by function, as the mutant processes read it."""
    listing = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    by_function: dict[str, list[dict[str, str]]] = defaultdict(list)
    for entry in listing["equivalent"]:
        if entry["why"] not in listing["reasons"]:
            sys.exit(f"{EQUIVALENTS.name}: {entry['function']}: reason {entry['why']!r} is not under [reasons]")
        by_function[entry["function"]].append(entry)
    return by_function


def unmatched_equivalents(folder: Path, by_module: dict[str, dict[str, list[str]]]) -> list[str]:
    """The reviewed entries of the group's modules that no mutant of the last run matched: their line changed, so
    the mutant they named runs its tests again (and shows as killed or surviving) until the entry is updated."""
    matched = set()
    sources: dict[str, str] = {}
    for statuses in by_module.values():
        for mutant in statuses.get("skipped", []):
            module, function, local = split_name(mutant)
            path = folder / "mutants" / "src" / (module.replace(".", "/") + ".py")
            source = sources.setdefault(module, path.read_text(encoding="utf-8"))
            matched.add((f"{module}.{function}", *change_of(source, local)))
    return [
        f"{function}: {entry['before']!r} -> {entry['after']!r}"
        for function, entries in reviewed_equivalents().items()
        if module_of(function) in by_module
        for entry in entries
        if (function, entry["before"], entry["after"]) not in matched
    ]


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


def mutant_seconds(folder: Path) -> dict[str, float]:
    """Wall seconds of the mutants the last run judged, summed per module, from the fork server's log."""
    seconds: dict[str, float] = defaultdict(float)
    log = folder / LOG
    for text in sorted(log.parent.glob(log.name + "*")):  # the log rotates at 10 MB
        for match in COMPLETED.finditer(text.read_text(encoding="utf-8", errors="replace")):
            seconds[module_of(match["name"])] += float(match["seconds"])
    return seconds


def too_slow(folder: Path) -> dict[str, set[str]]:
    """The mutants of the last run that a test failed by its time limit, per module."""
    mutants: dict[str, set[str]] = defaultdict(set)
    if (folder / TOO_SLOW).exists():
        for line in (folder / TOO_SLOW).read_text(encoding="utf-8").splitlines():
            mutant = line.split()[0]
            mutants[module_of(mutant.split("__mutmut_")[0])].add(mutant)
    return mutants


def table(
    group: str, by_module: dict[str, dict[str, list[str]]], seconds: dict[str, float], slow: dict[str, set[str]]
) -> dict:
    modules = {}
    for module, statuses in sorted(by_module.items()):
        killed = len(statuses.get("killed", []))
        survived = statuses.get("survived", [])
        timeouts = len(statuses.get("timeout", []))
        equivalent = len(statuses.get("skipped", []))
        judged = killed + len(survived) + timeouts
        share = (killed + timeouts) / judged if judged else 0.0
        modules[module] = {
            "group": group,
            "mutants": sum(map(len, statuses.values())),
            "killed": killed,
            "timeout": timeouts,
            "survived": len(survived),
            "not_covered": len(statuses.get("no tests", [])),
            "reviewed_equivalent_not_run": equivalent,
            "killed_share": round(share, 3),
            "target": target_for(module),
            "target_met": share >= target_for(module),
            "mutant_seconds_last_run": round(seconds.get(module, 0.0), 1),
            "killed_by_a_tests_time_limit_last_run": len(slow.get(module, ())),
            "survivors": survived,
        }
    return modules


def run_group(name: str, environment: dict[str, str], children: int) -> float:
    """One group's mutmut run, from its cache where it has one; its wall seconds."""
    folder = WORK / name
    for old_log in [*(folder / LOG).parent.glob(LOG.name + "*"), folder / TOO_SLOW]:
        old_log.unlink(missing_ok=True)
    listing = prepare(name, GROUPS[name]) / "equivalent-mutants.json"
    listing.write_text(json.dumps(reviewed_equivalents(), ensure_ascii=False), encoding="utf-8")
    started = time.monotonic()
    subprocess.run(
        [str(MUTMUT), "run", "--max-children", str(children)],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**environment, EQUIVALENTS_ENV: str(listing)},
    )
    return round(time.monotonic() - started, 1)


def run_in_lanes(chosen: list[str], environment: dict[str, str], lanes: int) -> dict[str, float]:
    """The groups side by side, `lanes` at a time, each with its share of the cores: mutmut's set-up (its stats
    run, its clean run) and the last slow mutants of a group keep one process busy, which leaves the other cores
    idle when groups run one after the other. Groups start in GROUPS' order, the longest first."""
    cores = len(os.sched_getaffinity(0))
    lanes = max(1, min(lanes or cores, len(chosen)))
    children = max(1, cores // lanes)
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        runs = {name: pool.submit(run_group, name, environment, children) for name in GROUPS if name in chosen}
        return {name: run.result() for name, run in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only print the table of the last runs")
    parser.add_argument("--group", action="append", choices=sorted(GROUPS), help="run only this group")
    parser.add_argument("--lanes", type=int, default=0, help="groups run side by side (default: one a core)")
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
    started = time.monotonic()
    seconds = {} if args.report else run_in_lanes(chosen, environment, args.lanes)
    wall = round(time.monotonic() - started, 1)
    modules: dict[str, dict] = {}
    unmatched: dict[str, list[str]] = {}
    for name in chosen:
        folder = WORK / name
        if (folder / "mutants").is_dir():
            by_module = results(folder)
            modules.update(table(name, by_module, mutant_seconds(folder), too_slow(folder)))
            unmatched[name] = unmatched_equivalents(folder, by_module)
    report = {
        "modules": modules,
        "all_targets_met": all(m["target_met"] for m in modules.values()),
        "equivalents_unmatched": {group: entries for group, entries in unmatched.items() if entries},
        "wall_seconds_per_group": seconds,
        "wall_seconds": 0.0 if args.report else wall,
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
