import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from retrosearch.organism import checkpoint_path
from retrosearch.organism.train import TrainConfig, train
from retrosearch.pipelines.demo import DemoConfig, demo


def test_the_shipped_checkpoint_loads_like_any_hub_model():
    path = checkpoint_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "llama"
    assert model.config.head_dim in (32, 64, 128)  # the head dimensions vLLM's CPU attention takes
    assert model.config.max_position_embeddings >= 1024
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert sum(f.stat().st_size for f in path.iterdir()) < 20_000_000
    assert (path / "README.md").exists()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "find the digit x : x + 1 gives 3"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|assistant|>")
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\n\nr\n\n</think>\n\na"}],
        tokenize=False,
    )
    assert "<think>\n\nr\n\n</think>" in rendered


def test_a_short_training_run_lowers_the_loss_and_resumes(tmp_path):
    config = TrainConfig(steps=24, batch_size=8, eval_every=8, eval_problems=2, warmup_steps=4, threads=1)
    train(tmp_path, config)
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [8, 16, 24]
    assert log[-1]["loss"] < log[0]["loss"]
    train(tmp_path, TrainConfig(**{**config.__dict__, "steps": 32}))
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 32
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.num_hidden_layers == 3


def test_demo_runs_end_to_end_on_a_handful_of_problems(tmp_path):
    summary = demo(DemoConfig(str(tmp_path / "demo"), problems=12))
    assert summary["problems"] == 12
    assert summary["traces"] == round(summary["accuracy"] * 12)
    assert (tmp_path / "demo" / "revise" / "summary.json").exists()
    assert summary["tokens_after_mean"] <= summary["tokens_before_mean"]


def test_weights_carry_into_a_grown_vocabulary_token_by_token():
    from types import SimpleNamespace

    import torch

    from retrosearch.organism.model import ModelSize, build_model
    from retrosearch.organism.tokenizer import build_tokenizer
    from retrosearch.organism.train import carry_vocabulary

    old = build_tokenizer()
    model = build_model(old, ModelSize(hidden=32, layers=1, heads=1, intermediate=64))
    before = model.get_input_embeddings().weight.detach().clone()
    grown = {token: index + 1 for token, index in old.get_vocab().items()} | {" brand-new": 0}
    carry_vocabulary(model, old, SimpleNamespace(get_vocab=lambda: grown))
    after = model.get_input_embeddings().weight
    assert after.shape[0] == len(grown) == model.config.vocab_size
    assert torch.equal(after[grown[" 7"]], before[old.get_vocab()[" 7"]])
    assert torch.allclose(after[0], before.mean(dim=0))
    assert model.get_output_embeddings().weight.data_ptr() == after.data_ptr()  # still tied
