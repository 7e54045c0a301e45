"""`retrosearch merge`: the run folders of `revise --shard 0/n` ... `n-1/n` joined into one revise run folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from retrosearch.config import option, overwrite_option, speed_only
from retrosearch.data.inputs import sample_ids
from retrosearch.data.outputs import write_json, write_jsonl
from retrosearch.engines import EngineConfig
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.folder import (
    MANIFEST,
    RunError,
    RunFolder,
    all_runs_seconds,
    comparable,
    differing_keys,
    manifest_of,
    summary_of,
)
from retrosearch.stages.revise import OUTPUT_FILE, ReviseConfig, RevisedRow, field_map, parse_shard, summarize
from retrosearch.stages.template import read_rows, run_once

SHARDS_FILE = "shards.json"  # the shards' manifests, as they were when merged


@dataclass(frozen=True)
class MergeConfig:
    shards: tuple[str, ...] = option((), "the shard run folders", positional=True)
    output: str = option("", "merged run folder (a revise run folder: report, sft and select read it)")
    overwrite: bool = overwrite_option()


def finished_summary(folder: Path) -> dict[str, Any]:
    """A finished shard's summary (its manifest said finished), in one line where it is missing or broken."""
    summary = summary_of(folder)
    if summary is None:
        raise RunError(f"merge: {folder} has no summary.json though its manifest says it finished; rerun that shard")
    return summary


def _shard_manifest(folder: str) -> dict[str, Any]:
    manifest = manifest_of(Path(folder))
    if manifest is None:
        raise RunError(f"{folder}: no {MANIFEST}; merge takes the run folders of `revise --shard i/n`")
    config = manifest.get("config", {}).get("ReviseConfig")
    if not config or not config.get("shard"):
        raise RunError(f"{folder} is not the run folder of a `revise --shard i/n` run")
    if not manifest.get("finished"):
        raise RunError(f"{folder}: shard {config['shard']} did not finish; rerun its command, then merge")
    return manifest


def merge(config: MergeConfig, quiet: bool = False) -> dict[str, Any]:
    """Merge the run folders of `--shard 0/n` ... `n-1/n` into one, in input order, each id exactly once.

    Verified first: every shard finished, all ran with the same configuration apart from the shard, and
    (where the input file is here) every input id is in exactly one shard; otherwise one line says what
    is wrong and nothing is written. A rerun with the same shards, unchanged, returns the merged summary."""
    if not config.shards or not config.output:
        raise ValueError("merge needs the shard folders and --output (the merged run folder)")
    # the order the shards are named in changes nothing: the folder's identity is the set
    config = replace(config, shards=tuple(sorted(config.shards, key=lambda folder: str(Path(folder).resolve()))))
    merged, manifests = _verified_rows(list(config.shards))

    def work(run: RunFolder) -> dict[str, Any]:
        write_jsonl(run.path / OUTPUT_FILE, map(asdict, merged))
        write_json(run.path / SHARDS_FILE, manifests)
        return {
            **summarize(merged),
            "shard_wall_seconds": max(all_runs_seconds(finished_summary(Path(folder))) for folder in manifests),
        }

    return run_once("merge", Path(config.output), (config,), config.overwrite, work, ("shards",), quiet)


def _verified_rows(shards: list[str]) -> tuple[list[RevisedRow], dict[str, dict[str, Any]]]:
    """The shards' rows in input order, and each shard's manifest by folder; a shard set that does not make one
    whole run is refused in one line."""
    manifests = [_shard_manifest(folder) for folder in shards]
    configs = [m["config"]["ReviseConfig"] for m in manifests]
    parsed = sorted((parse_shard(c["shard"]), folder) for c, folder in zip(configs, shards, strict=True))
    count = parsed[0][0][1]
    if [p[0] for p in parsed] != [(i, count) for i in range(count)]:
        raise RunError(f"merge needs the folders of shards 0/{count} .. {count - 1}/{count}, each once")
    # what may differ between the shards of one run
    ignored = (*speed_only(ReviseConfig, RetroSearchConfig, EngineConfig), "shard", "output")
    first = comparable(manifests[0]["config"], ignored)  # input paths resolved: t.jsonl is ./t.jsonl
    for folder, manifest in zip(shards[1:], manifests[1:], strict=True):
        differing = differing_keys(first, comparable(manifest["config"], ignored))
        if differing:
            raise RunError(f"{folder} was run with other settings than {shards[0]}: {', '.join(differing)}")

    rows_by_shard = [list(read_rows(Path(folder) / OUTPUT_FILE, RevisedRow)) for _, folder in parsed]
    merged = [rows[j] for j in range(max(map(len, rows_by_shard))) for rows in rows_by_shard if j < len(rows)]
    ids = [row.id for row in merged]
    if len(set(ids)) != len(ids):
        raise RunError("merge found an id in more than one shard; were the shards run on the same input?")
    first_config = configs[0]
    if Path(first_config["input"]).exists():
        expected = sample_ids(first_config["input"], field_map(ReviseConfig(**first_config)), first_config["limit"])
        present, known = set(ids), set(expected)
        for (_, folder), rows in zip(parsed, rows_by_shard, strict=True):
            stray = next((row.id for row in rows if row.id not in known), None)
            if stray is not None:
                raise RunError(
                    f"merge: {folder} holds id {stray!r}, which {first_config['input']} lacks; "
                    "were the shards run on this input?"
                )
        missing = [row_id for row_id in expected if row_id not in present]
        if missing or len(ids) != len(expected):
            raise RunError(
                f"merge: {len(missing)} of {len(expected)} input ids are in no shard (first: {missing[:3]}); "
                "rerun the shards that lack them"
            )
        position = {row_id: index for index, row_id in enumerate(expected)}
        merged.sort(key=lambda row: position[row.id])
    else:
        for (_, folder), rows in zip(parsed, rows_by_shard, strict=True):
            written = finished_summary(Path(folder))["samples"]
            if len(rows) != written:
                raise RunError(f"merge: {folder} holds {len(rows)} rows, its run finished with {written}")
    by_folder = dict(zip(shards, manifests, strict=True))
    return merged, {folder: by_folder[folder] for _, folder in parsed}
