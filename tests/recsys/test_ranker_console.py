"""Building TorchRec's KeyedJaggedTensor prints no torch.fx tracing advice (nothing traces)."""

from __future__ import annotations

import logging


def test_kjt_builds_without_the_is_fx_tracing_line(caplog):
    import torch

    import recsys.ranker  # noqa: F401  (installs the filter)
    from torchrec import KeyedJaggedTensor

    with caplog.at_level(logging.WARNING):
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=["a"], values=torch.tensor([1, 2]), lengths=torch.tensor([2]))
        logging.getLogger("torch.fx._symbolic_trace").warning("a real torch.fx warning")
    assert kjt.keys() == ["a"]
    assert "is_fx_tracing" not in caplog.text and "a real torch.fx warning" in caplog.text
