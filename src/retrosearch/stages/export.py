"""`retrosearch export RUN`: a run's traces as a Hugging Face dataset (Parquet shards and a dataset card saying how
they were made) in the layout a trainer takes, and with `--push-to-hub` on the Hub.

Runs it reads: revise and cut (`revised.jsonl`: the searched rows, revised or unchanged, with `--all-rows` the
skipped ones too with their original trace), generate and select (`traces.jsonl`, else the correct rows of
`samples.jsonl`) and eval (each benchmark's correct samples); a recipe's stage is its folder (`RUN/revise`)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from retrosearch.config import option, overwrite_option
from retrosearch.data.inputs import DataError
from retrosearch.data.outputs import write_whole
from retrosearch.engines.base import PromptConfig
from retrosearch.stages.folder import MANIFEST, RunFolder, manifest_of, summary_of
from retrosearch.stages.generate import SAMPLES_FILE, TRACES_FILE
from retrosearch.stages.revise import OUTPUT_FILE, SEARCHED
from retrosearch.stages.template import run_once

Layout = Literal["record", "messages", "sharegpt", "prompt-completion"]
CARD = "README.md"
DATA = "data"
SHARD_BYTES = 256 * 2**20  # Arrow bytes per Parquet shard: the Hub's viewer and `datasets` stream shards this size
CITATION = """@article{lu2025retrosearch,
  title   = {Retro-Search: Exploring Untaken Paths for Deeper and Efficient Reasoning},
  author  = {Lu, Ximing and Han, Seungju and Acuna, David and Kim, Hyunwoo and Jung, Jaehun and Prabhumoye, Shrimai
             and Muennighoff, Niklas and Patwary, Mostofa and Shoeybi, Mohammad and Catanzaro, Bryan and Choi, Yejin},
  journal = {arXiv preprint arXiv:2504.04383},
  year    = {2025}
}"""


@dataclass(frozen=True)
class ExportConfig:
    run: str = option(
        "", "run folder of revise, cut, generate, select or eval (a recipe's stage: RUN/STAGE)", positional=True
    )
    output: str = option("runs/export", "dataset folder: README.md (the card) and data/train-*.parquet")
    layout: Layout = option(
        "messages",
        "record: each input row in its own layout (revise and cut: with the revised trace); messages: chat turns "
        "(TRL and most trainers); sharegpt: conversations (LLaMA-Factory); prompt-completion: two text columns",
    )
    trace: Literal["revised", "original"] = option("revised", "revise and cut runs: which trace to export")
    all_rows: bool = option(False, "also rows that were not searched or not correct (their trace as it was)")
    license: str = option("other", "the card's license (that of the data the run read, e.g. apache-2.0)")
    push_to_hub: str | None = option(None, "then upload to this Hub dataset (ORG/NAME; token: HF_TOKEN or login)")
    private: bool = option(False, "create the Hub dataset private")
    overwrite: bool = overwrite_option()


@dataclass(frozen=True)
class Example:
    id: str
    problem: str
    trace: str
    answer: str | None
    record: dict[str, Any]


def read_manifest(run: Path) -> dict[str, Any]:
    manifest = manifest_of(run)
    if manifest is None:
        raise DataError(f"{run}: no {MANIFEST}; give a run folder that retrosearch wrote (revise, cut, generate …)")
    if not manifest.get("finished"):
        raise DataError(f"{run}: the run has not finished; rerun its command (it resumes), then export")
    return manifest


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def examples(run: Path, command: str, config: ExportConfig) -> Iterator[Example]:
    """The run's rows to export, in order."""
    if command in ("revise", "cut"):
        if config.layout == "record" and config.trace == "original":
            raise DataError("--layout record holds each row's revised trace; export --trace original as messages")
        for row in _jsonl(run / OUTPUT_FILE):
            if row["status"] in SEARCHED or (config.all_rows and row["status"] != "error"):
                yield Example(row["id"], row["problem"], row[config.trace], row["gold"], row["record"])
        return
    if config.trace != "revised":
        raise DataError(f"--trace {config.trace} is for revise and cut runs; {run} is a {command} run")
    if command in ("generate", "select"):
        files = [run / TRACES_FILE] if (run / TRACES_FILE).is_file() else [run / SAMPLES_FILE]
    elif command == "eval":
        files = sorted(run.glob("*/generate/samples.jsonl"))
    else:
        raise DataError(
            f"{run}: a {command} run holds no traces to export; give a revise, cut, generate, select or eval run"
        )
    for path in files:
        for row in _jsonl(path):
            if row.get("status") != "error" and (row["correct"] or config.all_rows):
                yield Example(row["id"], row["problem"], row["response"], row["answer"], row)


def system_prompt(manifest: dict[str, Any]) -> str | None:
    """The system prompt the run's model was given, if any (the exported chats carry it)."""
    prompt = manifest.get("config", {}).get("EngineConfig", {}).get("prompt") or {}
    return PromptConfig(**prompt).system()


def laid_out(example: Example, layout: Layout, system: str | None) -> dict[str, Any]:
    """One dataset row in `layout`."""
    if layout == "record":
        return example.record
    head = {"id": example.id}
    tail = {"answer": example.answer}
    if layout == "prompt-completion":
        return {**head, "prompt": example.problem, "completion": example.trace, **tail}
    turns = [("system", system)] if system else []
    turns += [("user", example.problem), ("assistant", example.trace)]
    if layout == "messages":
        return {**head, "messages": [{"role": role, "content": text} for role, text in turns], **tail}
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {**head, "conversations": [{"from": names[role], "value": text} for role, text in turns], **tail}


def size_category(rows: int) -> str:
    """The Hub's size category of a dataset of `rows` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M" if rows < 10_000_000 else "10M<n<100M"


def dataset_rows(run: str, command: str, config: ExportConfig, system: str | None) -> Iterator[dict[str, Any]]:
    """The rows of the exported dataset (a function of picklable arguments: `datasets` fingerprints it)."""
    for example in examples(Path(run), command, config):
        yield laid_out(example, config.layout, system)


def write_shards(arguments: dict[str, Any], folder: Path) -> tuple[int, list[Path]]:
    """The rows of `dataset_rows(**arguments)` as Parquet shards of about SHARD_BYTES each, written by `datasets`
    through an Arrow cache on disk (a run larger than memory streams through it). The number of rows and the shards."""
    try:
        import datasets
    except ImportError:
        raise ValueError("export writes with the datasets package: pip install 'retrosearch[hub]'") from None

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(dir=folder) as cache:
        dataset = datasets.Dataset.from_generator(dataset_rows, gen_kwargs=arguments, cache_dir=cache)
        count = len(dataset)
        shards = max(1, math.ceil(dataset.data.nbytes / SHARD_BYTES))
        (folder / DATA).mkdir(exist_ok=True)
        paths = [folder / DATA / f"train-{index:05d}-of-{shards:05d}.parquet" for index in range(shards)]
        for index, path in enumerate(paths):
            dataset.shard(shards, index, contiguous=True).to_parquet(str(path))
    return count, paths


def _settings(config: dict[str, Any]) -> list[str]:
    """Every setting of a manifest's config as table rows, nested settings by their dotted names."""
    rows = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            rows.append(f"| `{prefix}` | `{json.dumps(value, ensure_ascii=False)}` |")

    walk("", config)
    return rows


def source_of(settings: dict[str, Any]) -> str | None:
    """The data the run read: its stage config's input (revise, cut, select) or problems (generate)."""
    for stage in settings.values():
        if isinstance(stage, dict) and (stage.get("input") or stage.get("problems")):
            return stage.get("input") or stage.get("problems")
    return None


def decontamination_of(source: str | None) -> str:
    """What the card says about decontamination: the summary of the decontaminate run the input came from."""
    folder = Path(source).parent if source else None
    found = summary_of(folder) if folder else None
    if folder and found is not None:
        manifest = manifest_of(folder) or {}
        if manifest.get("command") == "decontaminate":
            against = ", ".join(f"{name} ({count:,} problems)" for name, count in found["against"].items())
            return (
                f"The input was decontaminated with `{manifest['command_line']}`: {found['contaminated']:,} of "
                f"{found['rows']:,} rows matched a benchmark problem and were "
                f"{'removed' if 'dropped' in found else 'listed, not removed'} (checked against {against}; "
                f"{found['ngram']}-gram overlap, config hash `{manifest['config_hash']}`)."
            )
    return (
        "The input was not decontaminated by retrosearch. Check it against the benchmarks you evaluate on with "
        "`retrosearch decontaminate --input … --against all --drop` before training on it."
    )


def card_text(
    run: Path, manifest: dict[str, Any], summary: dict[str, Any], config: ExportConfig, rows: int, shards: int
) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    settings = manifest.get("config", {})
    engine = settings.get("EngineConfig", {})
    source = source_of(settings)
    data = DatasetCardData(
        license=config.license,
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[size_category(rows)],
        tags=["reasoning", "math", "chain-of-thought", "retro-search", "synthetic"],
        pretty_name=f"retrosearch {manifest['command']} of {run.resolve().parent.name}/{run.name}",
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA}/train-*.parquet"}]}],
    )
    figures = [
        f"| {key} | {f'{value:.4g}' if isinstance(value, float) else json.dumps(value, ensure_ascii=False)} |"
        for key, value in summary.items()
        if not isinstance(value, (dict, list))
    ]
    breakdown = {key: value for key, value in summary.items() if isinstance(value, dict)}
    which_trace = f", trace `{config.trace}`" if manifest["command"] in ("revise", "cut") else ""
    revision = f" at revision `{engine['revision']}`" if engine.get("revision") else ""
    fingerprints = json.dumps(manifest.get("input_fingerprints", {}))
    kept = (
        "with every status"
        if config.all_rows
        else "only where correct (revise and cut: searched, so revised or unchanged)"
    )
    versions = ", ".join(f"{name} {version}" for name, version in manifest.get("versions", {}).items() if version)
    body = f"""
# {data.pretty_name}

{rows:,} rows in {shards} Parquet shard(s), layout `{config.layout}`{which_trace}, exported by `retrosearch export`
from the run folder `{run}` ({manifest["command"]}, finished {manifest.get("finished")}). Load it with
`datasets.load_dataset("<this folder or ORG/NAME>")`.

## How it was made

- Command (reproduces the run): `{manifest.get("command_line")}`
- Source data: `{source}`
- Model: `{engine.get("model", "none (no model)")}`{revision}
- Config hash: `{manifest.get("config_hash")}`; input fingerprints: `{fingerprints}`
- Versions: {versions}

Retro-Search (Lu et al., 2025) revisits every thought switch ("Wait,", "Alternatively,") of a correct reasoning trace,
lets the revision model continue the current thought instead, and keeps the rollout when it is still correct and
shorter. Rows are exported {kept}.

## Figures of the run

| figure | value |
|---|---|
{chr(10).join(figures)}

By status and reason: `{json.dumps(breakdown, ensure_ascii=False)}`

## Decontamination

{decontamination_of(source)}

## Every setting

| setting | value |
|---|---|
{chr(10).join(_settings(settings))}

## Citation

```bibtex
{CITATION}
```
"""
    return DatasetCard("---\n" + data.to_yaml() + "\n---\n" + body).content


def push(folder: Path, repo_id: str, private: bool) -> str:
    """Upload the card and the shards (not the run folder's own records) to the Hub dataset `repo_id`."""
    from huggingface_hub import HfApi

    api = HfApi()  # the endpoint (HF_ENDPOINT) and token (HF_TOKEN or login) as huggingface_hub reads them
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=[CARD, f"{DATA}/*.parquet"],
        commit_message=f"retrosearch export of {folder.name}",
    )
    return commit.commit_url


def export(config: ExportConfig, quiet: bool = False) -> dict[str, Any]:
    """Export `config.run`; a rerun with the same settings and run returns its summary (and pushes nothing again)."""
    if not config.run:
        raise ValueError("export needs RUN: a finished run folder of revise, cut, generate, select or eval")
    run = Path(config.run)
    manifest = read_manifest(run)
    summary = summary_of(run) or {}
    if next(examples(run, manifest["command"], config), None) is None:  # refused before anything is written
        raise DataError(f"{run}: no rows to export (use --all-rows for rows that were not searched or not correct)")

    def work(folder: RunFolder) -> dict[str, Any]:
        arguments = {
            "run": str(run),
            "command": manifest["command"],
            "config": config,
            "system": system_prompt(manifest),
        }
        count, shards = write_shards(arguments, folder.path)
        write_whole(folder.path / CARD, card_text(run, manifest, summary, config, count, len(shards)))
        done = {"rows": count, "layout": config.layout, "shards": len(shards), "card": str(folder.path / CARD)}
        if config.push_to_hub:
            done["pushed"] = push(folder.path, config.push_to_hub, config.private)
        return done

    return run_once("export", Path(config.output), (config,), config.overwrite, work, ("run",), quiet)
