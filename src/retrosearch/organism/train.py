"""Train the organism on teacher traces (`retrosearch organism train --output DIR`, in `stages/organism_train.py`).

One loop, nanoGPT-style: fresh teacher traces every step (seeded by step, so a resumed run sees the
same data), AdamW with warm-up and cosine decay, loss on the assistant turn only, sampled accuracy on
held-out problems at every evaluation, a checkpoint at every evaluation, resume from the last one.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from retrosearch.data.outputs import append_jsonl
from retrosearch.organism import MAX_NEW_TOKENS
from retrosearch.organism.model import ModelSize, build_model
from retrosearch.organism.task import Problem, random_problem, sample_problems
from retrosearch.organism.teacher import Habits, solve
from retrosearch.organism.tokenizer import save_tokenizer
from retrosearch.organism.train_config import TrainConfig

STATE_FILE = "training_state.pt"
LOG_FILE = "training_log.jsonl"
BOXED = re.compile(r"\\boxed\{(\d+)\}")


def learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.min_learning_rate + cosine * (config.learning_rate - config.min_learning_rate)


def training_problem(rng: random.Random) -> Problem:
    while True:
        problem = random_problem(rng)
        if problem.split == "train":
            return problem


def make_batch(
    tokenizer: PreTrainedTokenizerBase, step: int, config: TrainConfig, habits: Habits
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and labels (prompt and padding masked) for one step."""
    rng = random.Random(f"organism-train-{config.seed}-{step}")
    rows: list[tuple[list[int], int]] = []
    for _ in range(config.batch_size):
        problem = training_problem(rng)
        trace = solve(problem, rng, habits)
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": problem.text}], add_generation_prompt=True, tokenize=False
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(trace.text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + response_ids, len(prompt_ids)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
    return input_ids, mask, labels


@torch.no_grad()
def sampled_accuracy(model, tokenizer: PreTrainedTokenizerBase, problems: list[Problem]) -> float:
    """Accuracy at the sampling the organism is used with (temperature 0.6, top-p 0.95), seeded apart from
    training: greedy decoding of a teacher with habits says little (it abandons every line its teacher
    abandons more often than not)."""
    model.eval()
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p.text}], add_generation_prompt=True, tokenize=False)
        for p in problems
    ]
    batch = tokenizer(prompts, add_special_tokens=False, return_tensors="pt", padding=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        output = model.generate(**batch, do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=MAX_NEW_TOKENS)
    texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    correct = 0
    for problem, text in zip(problems, texts, strict=True):
        answers = BOXED.findall(text)
        correct += bool(answers) and answers[-1] == str(problem.answer)
    model.train()
    return correct / len(problems)


@torch.no_grad()
def carry_vocabulary(model, old: PreTrainedTokenizerBase, new: PreTrainedTokenizerBase) -> None:
    """Re-index the embeddings of `old`'s vocabulary to `new`'s, token by token; a new token starts at the mean.

    The tokenizer is rebuilt from code on every fresh run, so weights trained with an earlier vocabulary can
    be carried into a grown one (the organism's second generation added words this way)."""
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    if old_vocab == new_vocab:
        return
    weights = model.get_input_embeddings().weight
    carried = weights.mean(dim=0, keepdim=True).repeat(len(new_vocab), 1)
    for token, index in new_vocab.items():
        if token in old_vocab:
            carried[index] = weights[old_vocab[token]]
    model.resize_token_embeddings(len(new_vocab))
    model.get_input_embeddings().weight.copy_(carried)
    model.config.vocab_size = len(new_vocab)


def train(
    out: Path, config: TrainConfig = TrainConfig(), habits: Habits = Habits(), size: ModelSize = ModelSize()
) -> Path:
    """Train (or resume training) the organism into `out`; returns the checkpoint folder."""
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    state_path = out / STATE_FILE
    if state_path.exists():
        tokenizer = AutoTokenizer.from_pretrained(out)
        model = AutoModelForCausalLM.from_pretrained(out)
        state = torch.load(state_path, weights_only=False)
        start_step = state["step"]
    else:
        tokenizer = save_tokenizer(out)
        if config.init_from:
            model = AutoModelForCausalLM.from_pretrained(config.init_from)
            carry_vocabulary(model, AutoTokenizer.from_pretrained(config.init_from), tokenizer)
        else:
            model = build_model(tokenizer, size)
        state, start_step = None, 0
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    eval_problems = sample_problems("test", config.eval_problems, seed=config.seed + 1)
    started = time.monotonic()
    model.train()
    progress = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc="train")
    step = start_step
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        input_ids, mask, labels = make_batch(tokenizer, step, config, habits)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}")
        out_of_time = config.minutes is not None and time.monotonic() - started > 60 * config.minutes
        last = step + 1 == config.steps or out_of_time
        if (step + 1) % config.eval_every == 0 or last:
            accuracy = sampled_accuracy(model, tokenizer, eval_problems)
            entry = {
                "step": step + 1,
                "loss": round(loss.item(), 4),
                "sampled_accuracy": accuracy,
                "minutes": round((time.monotonic() - started) / 60, 2),
            }
            append_jsonl(out / LOG_FILE, entry)
            progress.write(json.dumps(entry))
            model.save_pretrained(out)
            torch.save(
                {
                    "step": step + 1,
                    "optimizer": optimizer.state_dict(),
                    "config": asdict(config),
                    "habits": asdict(habits),
                    "size": asdict(size),
                },
                state_path,
            )
        if out_of_time:
            break
    return out
