"""The local causal-LM loader: a toy Llama built in the test, and (slow) the real SmolLM2."""

from __future__ import annotations

import json

import pytest

from crossrec_core.errors import ModelLoadError
from retrieval.encoders import LocalLanguageModel, load_language_model

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def toy_lm_dir(tmp_path_factory):
    """A 2-layer Llama with a word-level tokenizer, saved as an HF directory."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant",
             "fresh", "apple", "juice", "great", "taste", "buy", "now", "a", "the", "write", "tagline", "for"]
    vocab = {w: i for i, w in enumerate(words)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         pad_token_id=1, eos_token_id=3, bos_token_id=2)
    directory = tmp_path_factory.mktemp("toy-llm")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_generate_shape_seed_and_chat_template(toy_lm_dir):
    lm = load_language_model(toy_lm_dir)
    assert isinstance(lm, LocalLanguageModel)
    assert "<|im_start|>system\nbe brief<|im_end|>" in lm.prompt_text("write a tagline", system="be brief")
    prompts = ["write a tagline for apple juice", "fresh taste"]
    out = lm.generate(prompts, max_new_tokens=5, num_return_sequences=3, seed=1, system="be brief")
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    assert all(isinstance(s, str) for row in out for s in row)
    assert lm.generate(prompts, max_new_tokens=5, num_return_sequences=3, seed=1, system="be brief") == out
    greedy = lm.generate(prompts[:1], max_new_tokens=4, num_return_sequences=2, temperature=0)
    assert greedy[0][0] == greedy[0][1]
    # batching with left padding gives each prompt the same greedy completion as alone
    alone = lm.generate(prompts[1:], max_new_tokens=4, temperature=0)
    together = lm.generate(prompts, max_new_tokens=4, temperature=0)
    assert together[1] == alone[0]
    # samples share one prefill per prompt (left-padded rows included): near-zero temperature
    # samples decode exactly what greedy decoding does
    near = lm.generate(prompts, max_new_tokens=4, num_return_sequences=2, temperature=1e-4)
    assert near == [[t[0]] * 2 for t in together]


def test_kept_prefix_greedy_rows_and_stop_rule(toy_lm_dir):
    lm = load_language_model(toy_lm_dir)
    prompts = ["write a tagline for apple juice", "write a tagline for fresh taste now"]
    kw = dict(max_new_tokens=4, system="be brief")
    plain = lm.generate(prompts, temperature=0, **kw)
    # the shared start's keys and values are computed once, kept, and give the same decoding
    kept = lm.generate(prompts, temperature=0, shared_prefix="write a tagline for", **kw)
    assert kept == plain and len(lm._prefixes) == 1
    assert lm.generate(prompts, temperature=0, shared_prefix="write a tagline for", **kw) == plain
    near = lm.generate(prompts, num_return_sequences=2, temperature=1e-4, shared_prefix="write a tagline for", **kw)
    assert near == [[t[0]] * 2 for t in plain]
    # the first ``greedy`` sequences of each prompt decode greedily among sampled ones
    mixed = lm.generate(prompts, num_return_sequences=3, greedy=1, temperature=5.0, seed=3, **kw)
    assert [row[0] for row in mixed] == [t[0] for t in plain] and all(len(row) == 3 for row in mixed)
    # a row stops once the rule holds for its text
    stopped = lm.generate(prompts, num_return_sequences=2, temperature=5.0, seed=3, max_new_tokens=8,
                          stop=lambda text: len(text.split()) >= 2, system="be brief")
    assert all(len(t.split()) <= 2 for row in stopped for t in row)
    with pytest.raises(ValueError, match="do not start with it"):
        lm.generate(prompts, shared_prefix="fresh")
    with pytest.raises(ValueError, match="greedy=3"):
        lm.generate(prompts, num_return_sequences=2, greedy=3)


def test_scores_and_quorum_stop(toy_lm_dir):
    import math

    lm = load_language_model(toy_lm_dir)
    prompts = ["write a tagline for apple juice", "write a tagline for fresh taste now"]
    kw = dict(system="be brief", shared_prefix="write a tagline for")
    scored = lm.generate_scored(prompts, num_return_sequences=3, greedy=1, temperature=5.0, seed=3, max_new_tokens=6, **kw)
    assert [[c.text for c in row] for row in scored] == lm.generate(
        prompts, num_return_sequences=3, greedy=1, temperature=5.0, seed=3, max_new_tokens=6, **kw)
    for row in scored:
        for c in row:
            assert len(c.logprobs) == len(c.ends) and all(lp <= 0 for lp in c.logprobs)
            assert list(c.ends) == sorted(c.ends) and (not c.ends or c.ends[-1] == len(c.text))
    # the greedy row's tokens are the model's most likely ones: its mean log-prob is the highest
    # a row of the same length can have; every row's own mean is what mean_logprob gives
    whole = [(0, len(c.text)) for c in scored[0]]
    means = [c.mean_logprob([span]) for c, span in zip(scored[0], whole)]
    assert all(m is None or m <= 0 for m in means)
    assert scored[0][0].mean_logprob([(0, 0)]) is None
    greedy = lm.generate_scored(prompts[:1], temperature=0, max_new_tokens=4, **kw)[0][0]
    assert all(math.isfinite(lp) for lp in greedy.logprobs)
    # quorum: the batch ends once every prompt has one finished row (two words), not when the
    # longest row is done; rows still writing come back cut where they were
    two_words = lambda text: len(text.split()) >= 2  # noqa: E731
    rows = lm.generate_scored(prompts, num_return_sequences=3, temperature=5.0, seed=4, max_new_tokens=12,
                              quorum=1, finished=two_words, **kw)
    assert all(any(two_words(c.text) for c in row) for row in rows)
    assert max(len(c.logprobs) for row in rows for c in row) < 12
    with pytest.raises(ValueError, match="quorum=1 needs finished"):
        lm.generate(prompts, quorum=1)
    with pytest.raises(ValueError, match="quorum=-1"):
        lm.generate(prompts, quorum=-1)


def test_bad_arguments_and_paths(toy_lm_dir, tmp_path):
    lm = load_language_model(toy_lm_dir)
    assert lm.generate([]) == []
    with pytest.raises(TypeError, match="single str"):
        lm.generate("one prompt")
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        lm.generate(["a"], max_new_tokens=0)
    with pytest.raises(ModelLoadError, match="no such directory"):
        load_language_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_language_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    with pytest.raises(ModelLoadError, match="not a causal LM"):
        load_language_model(tmp_path)


@pytest.mark.slow
def test_default_smollm2_converts_once_and_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path))
    lm = load_language_model()
    assert (lm.path / "model.safetensors").is_file()
    out = lm.generate(["Write a short tagline for fresh apple juice."], max_new_tokens=16, num_return_sequences=2)
    assert len(out[0]) == 2 and all(s.strip() for s in out[0])
    assert load_language_model().path == lm.path  # cached: no second conversion
