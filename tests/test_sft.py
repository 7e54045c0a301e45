import json

import pytest
import torch

from retrosearch.data.inputs import DataError
from retrosearch.data.outputs import LEDGER
from retrosearch.organism import checkpoint_path
from retrosearch.stages.sft import SFTRunConfig, build_trainer, sft, training_pairs
from retrosearch.stages.teacher import export_teacher


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "teacher.jsonl"
    export_teacher(path, 16, split="train", seed=0)
    return path


def test_loss_is_on_the_whole_reasoning_and_nothing_else(teacher_file, tmp_path):
    config = SFTRunConfig(input=str(teacher_file), output=str(tmp_path), max_length=1024)
    trainer = build_trainer(config, training_pairs(config, _tokenizer())[0])
    tokenizer = trainer.processing_class
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    labels = batch["labels"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    trained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    untrained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == -100])
    pair = training_pairs(config, tokenizer)[0][0]
    assert trained == pair["completion"] + tokenizer.eos_token
    assert trained.startswith("<think>") and "</think>" in trained and "try x =" in trained
    assert untrained == pair["prompt"]


def test_long_rows_are_refused_with_an_exact_count_or_dropped(teacher_file, tmp_path):
    tokenizer = _tokenizer()
    lengths = sorted(
        len(tokenizer(p["prompt"] + p["completion"], add_special_tokens=False)["input_ids"]) + 1
        for p in training_pairs(SFTRunConfig(input=str(teacher_file), max_length=10_000), tokenizer)[0]
    )
    cut = lengths[len(lengths) // 2]
    expected = sum(length > cut for length in lengths)
    with pytest.raises(DataError, match=f"{expected} of 16 rows exceed --max-length {cut}"):
        training_pairs(SFTRunConfig(input=str(teacher_file), max_length=cut), tokenizer)
    pairs, counts = training_pairs(SFTRunConfig(input=str(teacher_file), max_length=cut, drop_long=True), tokenizer)
    assert counts["dropped_too_long"] == expected and len(pairs) == 16 - expected


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_training_runs_on_cpu_and_writes_a_loadable_student(teacher_file, tmp_path, lora, capsys):
    from transformers import AutoModelForCausalLM

    config = SFTRunConfig(
        input=str(teacher_file),
        output=str(tmp_path),
        max_length=1024,
        batch_size=8,
        epochs=1,
        learning_rate=1e-2 if lora else 1e-3,  # two steps: LoRA needs the larger rate to move at all
        lora=lora,
        lora_rank=4,
        lora_alpha=8,
    )
    summary = sft(config)
    assert summary["steps"] == 2 and summary["kept"] == 16
    assert "retrosearch sft —" in capsys.readouterr().out  # the summary, printed unless quiet
    # what the trainer writes is recorded before it trains: --overwrite removes it after a run killed mid-training
    assert (tmp_path / LEDGER).read_text().splitlines()[:3] == ["manifest.json", "checkpoint-*", "final"]
    assert 0.0 < summary["train_loss"] < 10.0
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    base = AutoModelForCausalLM.from_pretrained(checkpoint_path())
    assert student.config.model_type == "llama"
    assert not [name for name in _saved_names(tmp_path / "final") if "lora" in name]  # merged, not adapters
    assert _saved_names(tmp_path / "final") >= {name for name, _ in base.named_parameters()} - {"lm_head.weight"}
    changed = {
        name for name, weight in student.state_dict().items() if not torch.equal(weight, base.state_dict()[name])
    }
    assert any(".mlp." in name for name in changed) and any(".self_attn." in name for name in changed)
    if lora:  # adapters sit on the linear layers only: embeddings and norms are the base's
        assert not [name for name in changed if "embed_tokens" in name or "norm" in name]
    # the student fits its training data better than the model it started from
    assert _mean_loss(student, teacher_file) < _mean_loss(base, teacher_file)
    assert sft(config) == summary  # a finished run is not trained again


def _saved_names(folder) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        return set(weights.keys())


def _mean_loss(model, teacher_file) -> float:
    tokenizer = _tokenizer()
    pairs = training_pairs(SFTRunConfig(input=str(teacher_file), max_length=1024), tokenizer)[0]
    losses = []
    with torch.no_grad():  # on the completion only, as training counts it
        for pair in pairs:
            prompt = tokenizer(pair["prompt"], add_special_tokens=False)["input_ids"]
            ids = tokenizer(pair["prompt"] + pair["completion"], return_tensors="pt", add_special_tokens=False)
            labels = ids["input_ids"].clone()
            labels[0, : len(prompt)] = -100
            losses.append(model(**ids, labels=labels).loss.item())
    return sum(losses) / len(losses)


def _tokenizer():
    from transformers import AutoTokenizer

    from retrosearch.organism import checkpoint_path

    return AutoTokenizer.from_pretrained(checkpoint_path())


def four_steps(teacher_file, output, **settings) -> SFTRunConfig:
    """16 traces, 8 a step, two epochs: four steps, each logged."""
    return SFTRunConfig(
        input=str(teacher_file),
        output=str(output),
        max_length=1024,
        batch_size=8,
        epochs=2,
        learning_rate=1e-3,
        logging_steps=1,
        **settings,
    )


def test_the_loss_and_learning_rate_of_every_logged_step_are_kept_and_sent_to_tensorboard(teacher_file, tmp_path):
    config = four_steps(teacher_file, tmp_path, warmup_ratio=0.0, report_to="tensorboard")
    summary = sft(config, quiet=True)
    logged = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4] and summary["logged_steps"] == 4
    assert summary["processes"] == 1  # no launcher
    assert [entry["epoch"] for entry in logged] == [0.5, 1.0, 1.5, 2.0]
    assert all(0.0 < entry["loss"] < 10.0 and entry["grad_norm"] > 0.0 for entry in logged)
    rates = [entry["learning_rate"] for entry in logged]
    assert rates[0] == pytest.approx(1e-3) and rates == sorted(rates, reverse=True)  # cosine, no warm-up
    events = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    assert events and all(event.stat().st_size > 0 for event in events)
    assert summary["training_log"] == str(tmp_path / "training_log.jsonl")
    # the tracker changes no result: a finished run under another --report-to is the same run
    assert sft(SFTRunConfig(**{**config.__dict__, "report_to": "none"}), quiet=True) == summary


def test_a_tracker_whose_package_is_absent_is_refused_in_one_line(monkeypatch):
    from retrosearch.stages import sft as sft_module

    monkeypatch.setattr(sft_module, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"--report-to wandb needs the wandb package: pip install wandb"):
        SFTRunConfig(report_to="wandb")
    with pytest.raises(ValueError, match=r"--report-to tensorboard needs the tensorboard package"):
        SFTRunConfig(report_to="tensorboard")
    assert SFTRunConfig(report_to="none").report_to == "none"


def test_an_interrupted_run_resumes_from_its_last_checkpoint(teacher_file, tmp_path, monkeypatch):
    import shutil

    from trl import SFTTrainer

    config = four_steps(teacher_file, tmp_path, save_steps=1)
    assert sft(config)["steps"] == 4
    logged = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    # as if the run had died after its third step: the last checkpoint and the end products are gone
    for done in ("summary.json", "final", "checkpoint-4"):
        path = tmp_path / done
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    steps_run = []
    original = SFTTrainer.training_step
    monkeypatch.setattr(
        SFTTrainer, "training_step", lambda self, *a, **k: steps_run.append(1) or original(self, *a, **k)
    )
    resumed = sft(config)
    assert resumed["steps"] == 4 and len(steps_run) == 1
    assert (tmp_path / "final" / "config.json").exists()
    # the resumed run's log holds the steps the killed run logged too, from its checkpoint
    assert [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()] == logged


def test_failed_rows_are_left_out_and_counted(teacher_file, tmp_path):
    lines = teacher_file.read_text().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    failed = '{"id": "x", "status": "error", "reason": "ServerError: gave up after 8 retries"}'
    mixed.write_text("\n".join([lines[0], failed, *lines[1:4]]) + "\n")
    pairs, counts = training_pairs(SFTRunConfig(input=str(mixed), max_length=10_000), _tokenizer())
    assert len(pairs) == 4 and counts["left_out_failed"] == 1 and counts["rows"] == 4
    # the mean length of what is trained on: each completion's tokens and its EOS
    tokenizer = _tokenizer()
    lengths = [len(tokenizer(pair["completion"], add_special_tokens=False)["input_ids"]) + 1 for pair in pairs]
    assert counts["completion_tokens_mean"] == round(sum(lengths) / 4, 2)
    only_failed = tmp_path / "failed.jsonl"
    only_failed.write_text(failed + "\n")
    with pytest.raises(DataError, match=r"no samples found \(1 failed rows left out\)"):
        training_pairs(SFTRunConfig(input=str(only_failed)), _tokenizer())


def test_a_student_run_follows_its_input_and_base_model_contents_and_overwrite_trains_anew(teacher_file, tmp_path):
    import shutil

    from retrosearch.stages.folder import RunError

    base = tmp_path / "base"
    shutil.copytree(checkpoint_path(), base)
    data = tmp_path / "data.jsonl"
    shutil.copy(teacher_file, data)
    config = SFTRunConfig(input=str(data), model=str(base), output=str(tmp_path / "student"), max_length=1024)
    config = SFTRunConfig(**{**config.__dict__, "batch_size": 16, "epochs": 1})
    summary = sft(config, quiet=True)
    assert summary["final"] == str(tmp_path / "student" / "final") and summary["steps"] == 1
    data.write_text(data.read_text().replace("try x", "try  x", 1))
    with pytest.raises(RunError, match=r"other input contents \(input changed since\)"):
        sft(config, quiet=True)
    shutil.copy(teacher_file, data)
    (base / "generation_config.json").write_text((base / "generation_config.json").read_text() + "\n")
    with pytest.raises(RunError, match=r"other input contents \(model changed since\)"):
        sft(config, quiet=True)
    retrained = sft(SFTRunConfig(**{**config.__dict__, "overwrite": True}), quiet=True)  # the changed base, anew
    assert retrained["steps"] == 1 and (tmp_path / "student" / "final" / "config.json").exists()


@pytest.mark.parametrize("lora", [False, True])
def test_the_trainer_gets_every_setting_of_the_run(teacher_file, tmp_path, lora):
    config = SFTRunConfig(input=str(teacher_file), output=str(tmp_path), max_length=777, lora=lora)
    config = SFTRunConfig(
        **{
            **config.__dict__,
            "batch_size": 3,
            "gradient_accumulation": 5,
            "learning_rate": 7e-4,
            "warmup_ratio": 0.25,
            "logging_steps": 9,
            "save_steps": 11,
            "seed": 13,
            "lora_rank": 6,
            "lora_alpha": 12,
        }
    )
    trainer = build_trainer(config, training_pairs(config, _tokenizer())[0])
    args = trainer.args
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 5)
    assert (args.learning_rate, args.lr_scheduler_type, args.warmup_steps) == (7e-4, "cosine", 0.25)
    assert (args.logging_steps, args.save_steps, args.save_total_limit, args.seed) == (9, 11, 2, 13)
    assert (args.max_length, args.report_to, args.num_train_epochs) == (777, [], config.epochs)
    assert (args.use_cpu, args.bf16) == (not torch.cuda.is_available(), torch.cuda.is_available())
    assert trainer.processing_class.name_or_path == str(checkpoint_path())
    if lora:
        adapter = trainer.model.peft_config["default"]
        assert (adapter.r, adapter.lora_alpha, adapter.task_type) == (6, 12, "CAUSAL_LM")
        # "all-linear": every linear layer of the blocks, the output head left out
        assert adapter.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    else:
        assert not hasattr(trainer.model, "peft_config")


@pytest.mark.parametrize(
    "option", ["limit", "batch_size", "gradient_accumulation", "max_length", "lora_rank", "save_steps", "logging_steps"]
)
def test_settings_below_one_are_refused_by_name(option):
    with pytest.raises(ValueError, match=f"--{option.replace('_', '-')} must be at least 1"):
        SFTRunConfig(**{option: 0})


@pytest.mark.parametrize("settings", [{"epochs": 0}, {"learning_rate": 0.0}, {"epochs": -1, "learning_rate": 1e-4}])
def test_no_epochs_or_no_learning_rate_is_refused(settings):
    with pytest.raises(ValueError) as error:
        SFTRunConfig(**settings)
    assert str(error.value) == "--epochs and --learning-rate must be above 0"


def test_pairs_follow_the_limit_the_fields_and_count_every_failed_row(tmp_path):
    import json

    rows = [{"ask_x": f"q{n}", "said_x": f"<think>\n\nr{n}\n\n</think>\n\n\\boxed{{{n}}}"} for n in range(4)]
    failed = {"id": "x", "status": "error", "reason": "gave up"}
    source = tmp_path / "odd.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in [failed, failed, *rows]))
    config = SFTRunConfig(input=str(source), problem_field="ask_x", trace_field="said_x", max_length=10_000)
    pairs, counts = training_pairs(config, _tokenizer())  # no gold field: the traces' own answers are taken
    assert (counts["rows"], counts["left_out_failed"], len(pairs)) == (4, 2, 4)
    assert "q3" in pairs[3]["prompt"] and pairs[3]["completion"].endswith("\\boxed{3}")
    limited, counts = training_pairs(SFTRunConfig(**{**config.__dict__, "limit": 4}), _tokenizer())
    assert (counts["rows"], counts["left_out_failed"], len(limited)) == (2, 2, 2)  # the first 4 lines of the file


def test_a_revise_output_trains_on_its_searched_rows_only_and_names_the_trace_it_takes(tmp_path):
    import json

    from retrosearch.engines.base import PromptConfig

    def row(name: str, status: str) -> dict:
        text = f"<think>\n\n{name} thinks\n\n</think>\n\n\\boxed{{5}}"
        record = {"id": name, "problem": f"p-{name}", "answer": "5", "response": text}
        return {
            "id": name,
            "problem": f"p-{name}",
            "gold": "5",
            "original": text,
            "revised": text + " ",
            "status": status,
            "record": record,
        }

    source = tmp_path / "revised.jsonl"
    statuses = ["revised", "skipped", "unchanged", "skipped", "revised"]
    source.write_text("".join(json.dumps(row(f"r{n}", status)) + "\n" for n, status in enumerate(statuses)))
    with pytest.raises(DataError) as error:
        training_pairs(SFTRunConfig(input=str(source)), _tokenizer())
    message = "a revise output holds two traces; choose one with --trace-field revised or original"
    assert str(error.value) == f"{source}:1: {message}"
    template = tmp_path / "template.jinja"
    turns = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    template.write_text(turns + "{% if add_generation_prompt %}[assistant]{% endif %}")
    prompt = PromptConfig(system_prompt="Think in lines.", chat_template=str(template))
    config = SFTRunConfig(input=str(source), trace_field="original", max_length=10_000, prompt=prompt)
    pairs, counts = training_pairs(config, _tokenizer())
    assert [pair["prompt"].count("p-r") for pair in pairs] == [1, 1, 1]
    assert ["p-r0" in pairs[0]["prompt"], "p-r2" in pairs[1]["prompt"], "p-r4" in pairs[2]["prompt"]] == [True] * 3
    assert pairs[0]["prompt"] == "[system] Think in lines.\n[user] p-r0\n[assistant]"
    assert (counts["left_out_not_searched"], counts["kept"]) == (2, 3)
    assert counts["longest_tokens"] == max(len(pair["input_ids"]) for pair in pairs) > 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"problem": "p", "response": "r"}) + "\n" + json.dumps({"problem": "p"}) + "\n")
    with pytest.raises(DataError, match=r"broken\.jsonl:2: "):
        training_pairs(SFTRunConfig(input=str(broken)), _tokenizer())


def test_a_revise_output_with_no_searched_row_is_one_line(tmp_path):
    import json

    text = "<think>\n\nr\n\n</think>\n\n\\boxed{5}"
    record = {"id": "a", "problem": "p", "answer": "5", "response": text}
    row = {"id": "a", "problem": "p", "original": text, "revised": text, "status": "skipped", "record": record}
    source = tmp_path / "revised.jsonl"
    source.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError) as error:
        training_pairs(SFTRunConfig(input=str(source), trace_field="revised"), _tokenizer())
    assert str(error.value) == f"{source}: no rows to train on"


def test_a_partial_checkpoint_of_a_run_killed_while_saving_is_passed_over(tmp_path):
    from retrosearch.stages.sft import last_checkpoint

    for step, complete in ((2, True), (10, True), (11, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # by step number, not name order
    assert last_checkpoint(tmp_path / "elsewhere") is None


class _Launched:
    """accelerate's state of one of two launched processes, as `sft` reads it; there is no process group, so
    what would pass between the processes is recorded instead."""

    def __init__(self, main: bool) -> None:
        self.is_main_process = main
        self.num_processes = 2


@pytest.fixture
def between_processes(monkeypatch):
    """What `sft` tells the other processes, and each time it waits for them to end together."""
    from retrosearch.stages import sft as sft_module

    said, ended = [], []
    monkeypatch.setattr(sft_module, "tell_the_other_processes", lambda word: said.append(word) or word)
    monkeypatch.setattr(sft_module, "end_together", lambda: ended.append(True))
    return said, ended


def test_a_launcher_of_several_processes_is_told_by_its_world_size(monkeypatch):
    import accelerate

    from retrosearch.stages.sft import launched_processes

    made = []
    monkeypatch.setattr(accelerate, "PartialState", lambda cpu: made.append(cpu) or "state")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_processes() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launched_processes() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_processes() == "state" and made == [not torch.cuda.is_available()]  # gloo on a CPU


def test_the_main_process_runs_the_stage_and_tells_the_others_whether_and_where_to_train(
    teacher_file, tmp_path, monkeypatch, between_processes
):
    from retrosearch.stages import sft as sft_module

    said, ended = between_processes
    with pytest.raises(DataError):  # one process alone tells nobody anything, refused or not
        sft(four_steps(tmp_path / "absent.jsonl", tmp_path / "alone"), quiet=True)
    assert said == [] and ended == []
    monkeypatch.setattr(sft_module, "launched_processes", lambda: _Launched(main=True))
    config = four_steps(teacher_file, tmp_path / "run")
    summary = sft(config, quiet=True)
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert said == [""] and ended == [True]  # train from no checkpoint, told before the trainer was built
    assert sft(config, quiet=True) == summary  # finished before: nothing to train
    assert said == ["", None] and ended == [True, True]
    with pytest.raises(DataError):  # refused: nothing to train either, and no process waits on
        sft(four_steps(tmp_path / "absent.jsonl", tmp_path / "other"), quiet=True)
    assert said == ["", None, None] and ended == [True, True]


def test_another_process_trains_beside_the_main_one_from_the_checkpoint_it_is_told(
    teacher_file, tmp_path, monkeypatch, between_processes
):
    from retrosearch.stages import sft as sft_module

    said, ended = between_processes
    monkeypatch.setattr(sft_module, "launched_processes", lambda: _Launched(main=False))
    built, resumed_from = [], []

    class Trainer:
        def train(self, resume_from_checkpoint):
            resumed_from.append(resume_from_checkpoint)

    monkeypatch.setattr(sft_module, "build_trainer", lambda config, pairs: built.append((config, pairs)) or Trainer())
    config = four_steps(teacher_file, tmp_path / "run")
    for word in (None, "", "run/checkpoint-2"):
        monkeypatch.setattr(sft_module, "tell_the_other_processes", lambda _, word=word: said.append(word) or word)
        assert sft(config, quiet=True) == {}
    assert said == [None, "", "run/checkpoint-2"] and resumed_from == [None, "run/checkpoint-2"]
    pairs = training_pairs(config, _tokenizer())[0]
    assert built == [(config, pairs), (config, pairs)]  # the main process's rows, in its order
    assert ended == [True, True, True] and not (tmp_path / "run").exists()  # the main process writes the folder
