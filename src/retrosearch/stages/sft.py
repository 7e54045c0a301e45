"""`retrosearch sft`: fine-tune a student on (original or revised) traces with TRL.

Each trace becomes a prompt-completion pair: the prompt is the model's chat template around the problem
(ready for the assistant's reply, with `--system-prompt` and template arguments as for generation), the
completion is the trace exactly as written, reasoning included, so no chat template can drop the `<think>` part;
where the template itself opens the reasoning, the completion starts after the marker (`prompting.join`), as
the model will be prompted. Rows go to TRL tokenized: prompt and completion apart, as the model is prompted and
writes (tokenizing the joined text can merge tokens across the join). Loss is on the completion only. Rows longer than
`max_length` are refused with their exact count (or dropped with `drop_long`), never cut silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.inputs import DataError, FieldMap, read_records, to_sample
from retrosearch.data.outputs import claim, write_jsonl
from retrosearch.engines import resolve_model
from retrosearch.engines.base import PromptConfig, chat_prompt, encode
from retrosearch.engines.threads import use_cpu_threads
from retrosearch.prompting import completion_part
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.revise import SEARCHED, RevisedRow
from retrosearch.stages.template import run_once

TRAINED_ON = ("input_ids", "completion_mask")  # what each training pair gives TRL (already tokenized)
TRAINING_LOG = "training_log.jsonl"  # the loss and learning rate at every logging step, for the report's curves
LOGGED = ("step", "epoch", "loss", "learning_rate", "grad_norm")
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}  # --report-to: either package


@dataclass(frozen=True)
class SFTRunConfig:
    input: str = option("", "traces to train on: a revise output, a generate/teacher traces file, or any dataset")
    output: str = option("runs/sft", "run folder; the student lands in OUTPUT/final (rerunning resumes)")
    model: str = option("organism", "the student's starting checkpoint: hub id, local path or 'organism'")
    trace_field: str | None = option(None, "field holding the trace, e.g. revised or original for a revise output")
    problem_field: str | None = option(None, "field holding the problem text")
    limit: int | None = option(None, "only the first N rows")
    epochs: float = option(1.0, "training epochs")
    batch_size: int = option(8, "rows per device per step")
    gradient_accumulation: int = option(1, "steps whose gradients are summed before an update")
    learning_rate: float = option(1e-5, "peak learning rate (cosine schedule)")
    warmup_ratio: float = option(0.03, "share of the steps spent warming up the learning rate")
    max_length: int = option(
        16384, "longest training row in tokens; longer rows are refused (or dropped with --drop-long)"
    )
    drop_long: bool = option(False, "leave out rows longer than --max-length (their exact count is reported)")
    lora: bool = option(False, "train LoRA adapters (PEFT) instead of all weights; merged into the final model")
    lora_rank: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha (scale = alpha / rank)")
    save_steps: int = option(500, "steps between checkpoints (a rerun resumes from the last one)")
    logging_steps: int = option(10, "steps between loss reports")
    report_to: Literal["none", "tensorboard", "wandb"] = option(
        "none",
        "also log the loss to TensorBoard (OUTPUT/runs) or Weights & Biases, through TRL's own integrations "
        "(the run folder keeps the loss in training_log.jsonl either way)",
        speed_only=True,
    )
    seed: int = option(0, "data order and initialisation seed")
    threads: int | None = option(
        None,
        "on a CPU: torch threads (default: OMP_NUM_THREADS if set, else one per core this process may use that no "
        "other process keeps busy)",
        speed_only=True,
    )
    prompt: PromptConfig = option(PromptConfig(), "how a problem becomes the student's prompt")
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        at_least(self, 1, "limit", "batch_size", "gradient_accumulation", "max_length", "lora_rank", "save_steps")
        at_least(self, 1, "logging_steps", "threads")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("--epochs and --learning-rate must be above 0")
        packages = TRACKERS.get(self.report_to, ())
        if packages and not any(find_spec(package) for package in packages):
            raise ValueError(f"--report-to {self.report_to} needs the {packages[0]} package: pip install {packages[0]}")


def training_pairs(config: SFTRunConfig, tokenizer) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Prompt-completion pairs (with their token ids and completion mask), and counts of what was kept and why
    rows were left out."""
    fields = FieldMap(problem=config.problem_field, trace=config.trace_field, gold_from_trace=True)
    samples, failed = [], 0
    for number, (record, source) in enumerate(read_records(config.input), start=1):
        if config.limit is not None and number > config.limit:
            break
        if isinstance(record, dict) and record.get("status") == "error":
            failed += 1  # a row whose generation or revision failed: it holds no trace
            continue
        if isinstance(record, dict) and RevisedRow.is_one(record) and config.trace_field is None:
            raise DataError(
                f"{source}: a revise output holds two traces; choose one with --trace-field revised or original"
            )
        samples.append(to_sample(record, source, fields, number))
    if not samples:  # every row failed: a file without rows is refused as it is read
        raise DataError(f"{config.input}: no samples found ({failed} failed rows left out)")
    pairs, too_long, not_searched, longest = [], 0, 0, 0
    for sample in samples:
        if RevisedRow.is_one(sample.record) and sample.record["status"] not in SEARCHED:
            not_searched += 1  # a revise row whose original was skipped (incorrect, unfinished) or failed
            continue
        prompt = chat_prompt(tokenizer, sample.problem, config.prompt)
        completion = completion_part(prompt, sample.response)  # trained as the model will be prompted
        row = training_row(tokenizer, prompt, completion)
        longest = max(longest, len(row["input_ids"]))
        if len(row["input_ids"]) > config.max_length:
            too_long += 1
            continue
        pairs.append({"prompt": prompt, "completion": completion, **row})
    if too_long and not config.drop_long:
        raise DataError(
            f"{config.input}: {too_long} of {len(samples)} rows exceed --max-length {config.max_length} tokens "
            f"(longest {longest}); raise --max-length, or pass --drop-long to leave exactly these rows out"
        )
    if not pairs:
        raise DataError(f"{config.input}: no rows to train on")
    return pairs, {
        "rows": len(samples),
        "kept": len(pairs),
        "dropped_too_long": too_long,
        "left_out_not_searched": not_searched,
        "left_out_failed": failed,
        "longest_tokens": longest,
        # the length of what is trained on, so a recipe can set a student's length beside its data's
        "completion_tokens_mean": round(sum(sum(pair["completion_mask"]) for pair in pairs) / len(pairs), 2),
    }


def training_row(tokenizer, prompt: str, completion: str) -> dict[str, list[int]]:
    """A pair as TRL trains on it: the prompt's ids, then the completion's and EOS, tokenized apart as the model
    is prompted and writes (tokenizing the joined text can merge tokens across the join); loss on the completion.
    `completion` is what the model writes after `prompt` (`prompting.completion_part`)."""
    prompt_ids = encode(tokenizer, prompt)
    completion_ids = [*encode(tokenizer, completion), tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + completion_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
    }


def build_trainer(config: SFTRunConfig, pairs: list[dict[str, Any]]):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    cuda = torch.cuda.is_available()
    if not cuda:
        use_cpu_threads(config.threads)
    arguments = SFTConfig(
        output_dir=config.output,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of all steps
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        max_length=config.max_length,
        completion_only_loss=True,
        report_to=[] if config.report_to == "none" else [config.report_to],
        seed=config.seed,
        bf16=cuda,
        use_cpu=not cuda,
    )
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    return SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list([{key: pair[key] for key in TRAINED_ON} for pair in pairs]),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def training_log(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training steps of a Trainer's log history (not its closing summary): step, epoch, loss, learning rate
    and gradient norm."""
    return [{key: entry.get(key) for key in LOGGED} for entry in history if "loss" in entry]


def launched_processes():
    """accelerate's state where the command runs as one of several processes (`accelerate launch`, torchrun),
    else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # as the trainer's own (use_cpu): gloo on a CPU


def last_checkpoint(folder: Path) -> str | None:
    """The latest checkpoint the trainer finished writing (its trainer_state.json is written last): a run killed
    while saving leaves a partial one, which a resume must not load."""
    finished = [path for path in folder.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return str(max(finished, key=lambda path: int(path.name.split("-")[-1]))) if finished else None


def tell_the_other_processes(resume: str | None) -> str | None:
    """The main process's word to the others, which wait for it: train, from this checkpoint ("" for none), or
    None: the run had finished before, or was refused, and there is nothing to train."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([resume], from_process=0)[0]


def end_together() -> None:
    """Every process waits for the others before leaving: one that leaves first cuts the others' gloo connections,
    which aborted a main process still saving its student ("terminate called without an active exception")."""
    import torch.distributed

    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def train_beside_the_main_process(config: SFTRunConfig) -> dict[str, Any]:
    """A process other than the main one of a distributed run: it trains its share of each batch and writes
    nothing; the main process holds the run folder, saves the checkpoints and the student, and reports."""
    from transformers import AutoTokenizer

    resume = tell_the_other_processes(None)
    if resume is None:
        return {}
    pairs, _ = training_pairs(config, AutoTokenizer.from_pretrained(resolve_model(config.model)))
    build_trainer(config, pairs).train(resume_from_checkpoint=resume or None)
    return {}


def sft(config: SFTRunConfig, quiet: bool = False) -> dict[str, Any]:
    """Train; rerunning resumes from the last checkpoint, and a finished run with the same settings and the
    same input contents returns its summary. The student lands in `<output>/final`. Under a launcher of several
    processes (`accelerate launch`), the main process runs the stage and the others train beside it."""
    processes = launched_processes()
    if processes is not None and not processes.is_main_process:
        trained = train_beside_the_main_process(config)
        end_together()
        return trained
    told = False

    def work(run: RunFolder) -> dict[str, Any]:
        nonlocal told
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.model))
        pairs, counts = training_pairs(config, tokenizer)
        resume = last_checkpoint(run.path)
        if processes is not None:  # before the trainer: building one waits for every process
            tell_the_other_processes(resume or "")
            told = True
        trainer = build_trainer(config, pairs)
        for written_by_trainer in ("checkpoint-*", "final"):
            claim(run.path / written_by_trainer)  # TRL and transformers write these, not our writer
        result = trainer.train(resume_from_checkpoint=resume)
        model = trainer.model
        if config.lora:
            model = model.merge_and_unload()
        final = run.path / "final"
        model.save_pretrained(final)
        trainer.processing_class.save_pretrained(final)
        logged = training_log(trainer.state.log_history)
        write_jsonl(run.path / TRAINING_LOG, logged)  # a resumed run's history holds its earlier steps too
        return {
            **counts,
            "processes": 1 if processes is None else processes.num_processes,
            "train_loss": result.training_loss,
            "steps": result.global_step,
            "logged_steps": len(logged),
            "training_log": str(run.path / TRAINING_LOG),
            "final": str(final),
        }

    try:
        summary = run_once("sft", Path(config.output), (config,), config.overwrite, work, ("input", "model"), quiet)
    finally:
        if processes is not None and not told:  # finished before, or refused: the others wait for a word
            tell_the_other_processes(None)
    if processes is not None:
        end_together()
    return summary
