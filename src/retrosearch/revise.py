"""`retrosearch revise`: Retro-Search over a dataset of traces, resumable, with a summary."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrosearch.answers import Verdict, default_checker, extract_answer
from retrosearch.data import (
    FieldMap,
    JsonlAppender,
    Sample,
    iter_samples,
    read_jsonl,
    sample_ids,
    with_response,
    write_in_order,
    write_json,
    write_jsonl,
)
from retrosearch.engines import Engine, EngineConfig, load_engine
from retrosearch.rundir import (
    MANIFEST,
    SUMMARY,
    RunError,
    config_payload,
    now,
    open_run,
    print_summary,
    save_summary,
    without,
    write_manifest,
)
from retrosearch.runner import RunStats, error_ids, run_items
from retrosearch.search.retro_search import RetroSearch, RetroSearchConfig
from retrosearch.trace import Trace, parse

OUTPUT_FILE = "revised.jsonl"
SPEED_ONLY = ("batch_size", "device", "concurrency", "overwrite", "ray", "address", "replicas", "gpus_per_replica")


@dataclass(frozen=True)
class ReviseConfig:
    input: str = ""
    output: str = "runs/revise"
    limit: int | None = None
    shard: str | None = None  # "i/n": only input positions p with p % n == i (job arrays; `retrosearch merge`)
    overwrite: bool = False
    concurrency: int = 0  # samples in flight; 0 = twice the engine's batch size
    problem_field: str | None = None
    answer_field: str | None = None
    trace_field: str | None = None
    id_field: str | None = None
    gold_from_trace: bool = False
    max_input_tokens: int | None = None  # skip longer traces (reason "too long")
    ray: bool = False  # spread the work over a pool of Ray actors (one engine each)
    address: str | None = None  # Ray cluster address (default: start a local one, or RAY_ADDRESS)
    replicas: int = 1  # Ray actors, each with its own engine
    gpus_per_replica: float = 0.0


class Reviser:
    """Turns one sample into one output row."""

    def __init__(
        self,
        engine: Engine,
        search: RetroSearch,
        config: ReviseConfig,
        check: Callable[[str | None, str | None], Verdict] | None = None,
    ) -> None:
        self.engine = engine
        self.search = search
        self.config = config
        self.check = check or (lambda gold, answer: Verdict(search.is_correct(gold, answer)))
        self.accepted = 0

    @classmethod
    def on(cls, engine: Engine, search: RetroSearchConfig, config: ReviseConfig) -> Reviser:
        """Retro-Search with `search` on `engine`, answers checked by the default checker."""
        checker = default_checker()
        return cls(engine, RetroSearch(engine, checker.is_correct, search), config, checker.check)

    def _stats(self, text: str, suffix: str) -> dict[str, Any]:
        trace = parse(text)
        stats = trace.stats(self.search.matcher)
        return {
            f"tokens_{suffix}": self.engine.count_tokens(text),
            f"steps_{suffix}": stats.steps,
            f"thoughts_{suffix}": stats.thoughts,
            f"switches_{suffix}": stats.switches,
        }

    async def __call__(self, sample: Sample) -> dict[str, Any]:
        trace = parse(sample.response)
        row: dict[str, Any] = {
            "id": sample.id,
            "problem": sample.problem,
            "gold": sample.gold,
            "format": trace.format.name,
            "original": sample.response,
            **self._stats(sample.response, "before"),
        }
        reason = await self._skip_reason(trace, sample, row)
        if reason is not None:
            status = "unchanged" if reason == "no thought switch" else "skipped"
            return self._finish(row, sample, sample.response, status, reason, [], 0, 0)
        result = await self.search.revise(sample.id, sample.problem, sample.gold or "", trace)
        revised = result.trace.render()
        self.accepted += len(result.revisions)
        status = "revised" if result.revisions else "unchanged"
        reason = "shorter correct rollout accepted" if result.revisions else "no rollout was correct and shorter"
        revisions = [asdict(r) for r in result.revisions]
        return self._finish(row, sample, revised, status, reason, revisions, result.rollouts, result.generated_tokens)

    async def _skip_reason(self, trace: Trace, sample: Sample, row: dict[str, Any]) -> str | None:
        context = self.engine.context_length
        if context is not None:  # decided at once: a trace the model cannot read is never searched
            prompt_tokens = self.engine.count_tokens(self.engine.chat_prompt(sample.problem))
            if prompt_tokens + row["tokens_before"] >= context:
                return (
                    f"too long for the model: {prompt_tokens + row['tokens_before']} tokens of prompt and trace, "
                    f"its context holds {context}"
                )
        if not trace.finished:
            return "unfinished reasoning"
        answer = extract_answer(trace.solution)
        if answer is None:
            return "no final answer"
        verdict = await asyncio.to_thread(self.check, sample.gold, answer)
        if not verdict.correct:
            return verdict.reason or "incorrect original answer"  # a check that timed out says so
        limit = self.config.max_input_tokens
        if limit is not None and row["tokens_before"] > limit:
            return "too long"
        if not trace.switch_indices(self.search.matcher):
            return "no thought switch"
        return None

    def _finish(
        self,
        row: dict[str, Any],
        sample: Sample,
        revised: str,
        status: str,
        reason: str,
        revisions: list[dict[str, Any]],
        rollouts: int,
        generated: int,
    ) -> dict[str, Any]:
        after = (
            self._stats(revised, "after")
            if revised != sample.response
            else {key.replace("_before", "_after"): value for key, value in row.items() if key.endswith("_before")}
        )
        return {
            **row,
            "revised": revised,
            **after,
            "revisions": revisions,
            "rollouts": rollouts,
            "generated_tokens": generated,
            "status": status,
            "reason": reason,
            "record": with_response(sample, revised),
        }


def field_map(config: ReviseConfig) -> FieldMap:
    return FieldMap(
        config.problem_field, config.answer_field, config.trace_field, config.id_field, config.gold_from_trace
    )


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n (e.g. 0/4), not {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: i must be in 0..n-1")
    return index, count


def _shard_manifest(folder: str) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise RunError(f"{folder}: no {MANIFEST}; merge takes the run folders of `revise --shard i/n`")
    manifest = json.loads(path.read_text())
    config = manifest.get("config", {}).get("ReviseConfig")
    if not config or not config.get("shard"):
        raise RunError(f"{folder} is not the run folder of a `revise --shard i/n` run")
    if not manifest.get("finished"):
        raise RunError(f"{folder}: shard {config['shard']} did not finish; rerun its command, then merge")
    return manifest


def merge(shards: list[str], output: str, quiet: bool = False) -> dict[str, Any]:
    """Merge the run folders of `--shard 0/n` ... `n-1/n` into one, in input order, each id exactly once.

    Verified first: every shard finished, all ran with the same configuration apart from the shard, and
    (where the input file is here) every input id is in exactly one shard; otherwise one line says what
    is wrong and nothing is written."""
    manifests = [_shard_manifest(folder) for folder in shards]
    configs = [m["config"]["ReviseConfig"] for m in manifests]
    parsed = sorted((parse_shard(c["shard"]), folder) for c, folder in zip(configs, shards, strict=True))
    count = parsed[0][0][1]
    if [p[0] for p in parsed] != [(i, count) for i in range(count)]:
        raise RunError(f"merge needs the folders of shards 0/{count} .. {count - 1}/{count}, each once")
    ignored = (*SPEED_ONLY, "shard", "output")  # what may differ between the shards of one run
    first = without(manifests[0]["config"], ignored)
    for folder, manifest in zip(shards[1:], manifests[1:], strict=True):
        other = without(manifest["config"], ignored)
        differing = sorted(
            f"{section}.{key}"
            for section in first
            for key in {*first[section], *other.get(section, {})}
            if first[section].get(key) != other.get(section, {}).get(key)
        )
        if differing:
            raise RunError(f"{folder} was run with other settings than {shards[0]}: {', '.join(differing)}")
    rows_by_shard = [read_jsonl(Path(folder) / OUTPUT_FILE) for _, folder in parsed]
    merged = [rows[j] for j in range(max(map(len, rows_by_shard))) for rows in rows_by_shard if j < len(rows)]
    ids = [row["id"] for row in merged]
    if len(set(ids)) != len(ids):
        raise RunError("merge found an id in more than one shard; were the shards run on the same input?")
    config = configs[0]
    if Path(config["input"]).exists():
        expected = sample_ids(config["input"], field_map(ReviseConfig(**config)), config["limit"])
        present = set(ids)
        missing = [row_id for row_id in expected if row_id not in present]
        if missing or len(ids) != len(expected):
            raise RunError(
                f"merge: {len(missing)} of {len(expected)} input ids are in no shard (first: {missing[:3]}); "
                "rerun the shards that lack them"
            )
        position = {row_id: index for index, row_id in enumerate(expected)}
        merged.sort(key=lambda row: position[row["id"]])
    else:
        for (_, folder), rows in zip(parsed, rows_by_shard, strict=True):
            written = json.loads((Path(folder) / SUMMARY).read_text())["samples"]
            if len(rows) != written:
                raise RunError(f"merge: {folder} holds {len(rows)} rows, its run finished with {written}")
    target = Path(output)
    target.mkdir(parents=True, exist_ok=True)
    write_jsonl(target / OUTPUT_FILE, merged)
    summary = summarize(merged, max(json.loads((Path(f) / SUMMARY).read_text())["wall_seconds"] for f in shards))
    save_summary(target, summary)
    write_json(target / MANIFEST, {"merged_from": [folder for _, folder in parsed], "shard_manifests": manifests})
    if not quiet:
        print_summary(f"retrosearch merge — {output}", summary)
    return summary


def summarize(rows: list[dict[str, Any]], wall_seconds: float) -> dict[str, Any]:
    searched = [r for r in rows if r.get("status") in ("revised", "unchanged")]
    skipped = Counter(r["reason"] for r in rows if r.get("status") == "skipped")

    def mean(key: str, subset: list[dict[str, Any]]) -> float:
        return statistics.fmean(r[key] for r in subset) if subset else 0.0

    before, after = mean("tokens_before", searched), mean("tokens_after", searched)
    return {
        "samples": len(rows),
        "revised": sum(r.get("status") == "revised" for r in rows),
        "unchanged": sum(r.get("status") == "unchanged" for r in rows),
        "skipped": dict(skipped),
        "errors": sum(r.get("status") == "error" for r in rows),
        "error_ids": error_ids(rows),
        "accepted_revisions": sum(len(r.get("revisions", [])) for r in rows),
        "tokens_before_mean": before,
        "tokens_after_mean": after,
        "tokens_ratio": after / before if before else 0.0,
        "steps_before_mean": mean("steps_before", searched),
        "steps_after_mean": mean("steps_after", searched),
        "switches_before_mean": mean("switches_before", searched),
        "switches_after_mean": mean("switches_after", searched),
        "rollouts": sum(r.get("rollouts", 0) for r in rows),
        "generated_tokens": sum(r.get("generated_tokens", 0) for r in rows),
        "wall_seconds": wall_seconds,
    }


async def _revise_here(
    samples: Iterable[Sample],
    total: int,
    engine: Engine,
    search: RetroSearchConfig,
    config: ReviseConfig,
    appender: JsonlAppender,
    concurrency: int,
) -> RunStats:
    """All samples through one engine in this process."""
    reviser = Reviser.on(engine, search, config)
    started, generated_at_start = time.monotonic(), getattr(engine, "generated_tokens", 0)

    def postfix() -> dict[str, Any]:
        elapsed = max(time.monotonic() - started, 1e-9)
        tokens = getattr(engine, "generated_tokens", 0) - generated_at_start
        return {"accepted": reviser.accepted, "tok/s": f"{tokens / elapsed:,.0f}"}

    return await run_items(samples, total, reviser, appender, concurrency, "revise", postfix)


def revise(
    config: ReviseConfig,
    search: RetroSearchConfig = RetroSearchConfig(),
    engine_config: EngineConfig = EngineConfig(),
    engine: Engine | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Revise `config.input` into `config.output`; returns the summary (also in summary.json)."""
    if not config.input:
        raise ValueError("revise needs --input: a traces file or dataset id")
    output = Path(config.output)
    fields = field_map(config)
    ids = sample_ids(config.input, fields, config.limit)  # all input errors surface before any write
    shard = slice(None)
    if config.shard:
        index, count = parse_shard(config.shard)
        shard = slice(index, None, count)
        ids = ids[shard]
    samples = itertools.islice(iter_samples(config.input, fields, config.limit), shard.start, None, shard.step)
    payload = config_payload(config, search, engine_config)
    with open_run(output, payload, config.overwrite, SPEED_ONLY) as digest:
        started_at, started = now(), time.monotonic()
        if config.ray:
            from retrosearch.distributed import revise_on_ray

            engine_facts = {"model": engine_config.model, "model_revision": engine_config.revision}
        else:
            engine = engine or load_engine(engine_config)
            engine_facts = {"model": engine.model_id, "model_revision": engine.revision}
        appender = JsonlAppender(output / OUTPUT_FILE)
        run_facts = {**engine_facts, "input": config.input, "started": started_at}
        write_manifest(output, payload, digest, {**run_facts, "finished": None})
        concurrency = config.concurrency or 2 * engine_config.batch_size
        counts_before = dict(getattr(engine, "counts", {}))  # an engine may have served other runs before
        try:
            if config.ray:
                stats = revise_on_ray(
                    samples,
                    len(ids),
                    appender,
                    (engine_config, search, config),
                    config.address,
                    config.replicas,
                    config.gpus_per_replica,
                    concurrency,
                )
            else:
                stats = asyncio.run(_revise_here(samples, len(ids), engine, search, config, appender, concurrency))
        finally:
            appender.close()
        write_in_order(output / OUTPUT_FILE, ids)
        wanted = set(ids)
        rows = [row for row in read_jsonl(output / OUTPUT_FILE) if row["id"] in wanted]
        summary = summarize(rows, time.monotonic() - started)
        summary["resumed_samples"] = stats.skipped_existing
        summary.update(
            {
                f"engine_{name}": count - counts_before.get(name, 0)
                for name, count in getattr(engine, "counts", {}).items()
            }
        )
        save_summary(output, summary)
        write_manifest(
            output,
            payload,
            digest,
            {
                **run_facts,
                "finished": now(),
                "counts": {k: summary[k] for k in ("samples", "revised", "errors")},
                "wall_seconds": summary["wall_seconds"],
            },
        )
        if not quiet:
            print_summary(f"retrosearch revise — {output}", summary)
        return summary
