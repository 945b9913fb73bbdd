"""Plots are real PNG files written where asked, parents created."""

from __future__ import annotations

import numpy as np
from PIL import Image

from retrieval.plots import plot_retrieval_grid, plot_training_curves


def _png_size(path):
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_training_curves_written(tmp_path):
    history = [{"epoch": e, "loss": 3.0 / e, "val_i2t_acc@1": 0.1 * e} for e in range(1, 5)]
    out = plot_training_curves({"baseline": {"history": history}, "crossclip": {"history": history}},
                               tmp_path / "new" / "curves.png")
    assert out == tmp_path / "new" / "curves.png"
    width, height = _png_size(out)
    assert width > height > 100


def test_retrieval_grid_has_a_row_per_query(grocery, tmp_path):
    photos = grocery.split("test")[:2]
    icons = [p.iconic_image for p in grocery.products[:3]]
    one = plot_retrieval_grid([p.path for p in photos[:1]], ["q"], [icons], [["a", "b", "c"]],
                              np.array([[True, False, False]]), tmp_path / "one.png")
    two = plot_retrieval_grid([p.path for p in photos], ["q1", "q2"], [icons, icons], [["a", "b", "c"]] * 2,
                              np.zeros((2, 3), bool), tmp_path / "two.png", title="grid")
    (w1, h1), (w2, h2) = _png_size(one), _png_size(two)
    assert w1 == w2 and h2 > 1.5 * h1


def _query_report(systems: int, zh: bool) -> dict:
    cell = lambda v: {"ndcg@10": v, "mrr": v, "recall@10": v, "n": 3 if v is not None else 0}
    report = {"dataset": "shop", "systems": {f"s{i}": "" for i in range(systems)}}
    for i in range(systems):
        report[f"s{i}"] = {split: {"en": cell(0.1 * (i + 1)), "zh": cell(0.05 * (i + 1) if zh else None)}
                           for split in ("heldout", "dev")}
    return report


def test_query_eval_plot_grows_with_systems_and_languages(tmp_path):
    import pytest

    from retrieval.plots import plot_query_eval

    small = _png_size(plot_query_eval(_query_report(3, zh=False), tmp_path / "a" / "small.png"))
    large = _png_size(plot_query_eval(_query_report(8, zh=True), tmp_path / "large.png"))
    assert large[1] > small[1]  # more systems and an extra language: a taller chart
    with pytest.raises(ValueError, match="no system"):
        plot_query_eval({"systems": {}}, tmp_path / "none.png")
