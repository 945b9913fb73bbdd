"""The ranker's serving path (``RankerEnsemble.score``: no KeyedJaggedTensor, layers as functions)
gives exactly the logits of ``forward`` on the KJT, with and without explanation masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.ranker import FEATURE_GROUPS, RankerBatch, RankerConfig, RankerEnsemble


def _batch(config: RankerConfig, rows: int, rng: np.random.Generator) -> RankerBatch:
    genres = np.full((rows, 3), -1, np.int64)
    for r in range(rows):  # 0 to 3 genres per row: empty bags included
        g = rng.choice(config.n_genres, size=rng.integers(0, 4), replace=False)
        genres[r, : len(g)] = g
    return RankerBatch(
        user_rows=rng.integers(0, config.n_users, rows), item_rows=rng.integers(0, config.n_items, rows),
        genres=genres,
        demo_codes=np.stack([rng.integers(0, 8, rows), rng.integers(0, 3, rows),
                             rng.integers(0, config.n_occupations + 1, rows)], axis=1),
        dense=rng.normal(size=(rows, len(config.dense_names))).astype(np.float32),
        mm=rng.normal(size=(rows, config.mm_block)).astype(np.float32) if config.mm_block else None)


@pytest.mark.parametrize("mm_block", [0, 8])
def test_score_equals_forward_on_the_kjt(mm_block):
    torch.manual_seed(0)
    config = RankerConfig(n_users=30, n_items=50, n_genres=6, n_occupations=4, mm_dim=8 if mm_block else 0,
                          mm_block=mm_block)
    ensemble = RankerEnsemble(config, n_models=3).eval()
    rng = np.random.default_rng(0)
    masks = torch.stack([torch.ones_like(ensemble.group_mask("genre"))]
                        + [ensemble.group_mask(g) for g in FEATURE_GROUPS if g != "multimodal" or mm_block])
    for rows in (1, 7, 300):
        batch = _batch(config, rows, rng)
        mm = None if batch.mm is None else torch.from_numpy(batch.mm)
        drop = masks[torch.from_numpy(rng.integers(0, len(masks), rows))]
        with torch.inference_mode():
            reference = ensemble(batch.kjt(), torch.from_numpy(batch.dense), mm)
            served = ensemble.score(batch)
            reference_drop = ensemble(batch.kjt(), torch.from_numpy(batch.dense), mm, drop)
            served_drop = ensemble.score(batch, drop)
        assert served.shape == (rows,)
        assert torch.equal(served, reference)  # the same operations on the same values: bit for bit
        assert torch.equal(served_drop, reference_drop)
        assert not torch.equal(served_drop, served)  # the masks do change the logits
