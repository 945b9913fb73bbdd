"""Plots of the retrieval evaluation: training curves, a retrieval example grid and the query-set
search report (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from crossrec_core.plots import pyplot, save_figure

__all__ = ["plot_training_curves", "plot_retrieval_grid", "plot_query_eval"]


def plot_training_curves(training: dict, path: str | os.PathLike) -> Path:
    """``training``: model name -> record with ``history`` (loss, val_i2t_acc@1 per epoch)."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rec in training.items():
        hist = rec["history"]
        epochs = [h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["loss"] for h in hist], marker="o", label=name)
        if hist and "val_i2t_acc@1" in hist[0]:
            ax_acc.plot(epochs, [h["val_i2t_acc@1"] for h in hist], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="contrastive loss", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="Acc@1", title="validation image→text Acc@1")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_retrieval_grid(queries: Sequence[str | os.PathLike], query_titles: Sequence[str],
                        results: Sequence[Sequence[str | os.PathLike]], result_titles: Sequence[Sequence[str]],
                        correct: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """One row per query image: the query, then its top hits (green frame = correct)."""
    from PIL import Image

    plt = pyplot()
    rows, cols = len(queries), 1 + max(len(r) for r in results)
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows), squeeze=False)
    for r in range(rows):
        cells = [(queries[r], f"query\n{query_titles[r]}", None)]
        cells += [(p, t, bool(correct[r][j])) for j, (p, t) in enumerate(zip(results[r], result_titles[r]))]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            img_path, label, ok = cells[c]
            with Image.open(img_path) as img:
                ax.imshow(img.convert("RGB"))
            ax.set_title(label[:28], fontsize=7)
            if ok is not None:
                for spine in ax.spines.values():
                    spine.set_edgecolor("green" if ok else "red")
                    spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_query_eval(report: dict, path: str | os.PathLike) -> Path:
    """nDCG@10 of every system of an ``eval-queries`` report, held-out and dev, per language
    (bars; a language with no queries in a split is left out), best held-out system on top."""
    plt = pyplot()
    names = [n for n in report.get("systems", {}) if n in report]
    cells = [(split, lang) for split in ("heldout", "dev") for lang in ("en", "zh")
             if any(report[n][split][lang]["ndcg@10"] is not None for n in names)]
    if not names or not cells:
        raise ValueError("report holds no system with nDCG@10 figures to plot")

    def value(n, split, lang):
        v = report[n][split][lang]["ndcg@10"]
        return np.nan if v is None else v

    def heldout_mean(n):
        values = [v for v in (value(n, "heldout", lang) for lang in ("en", "zh")) if not np.isnan(v)]
        return float(np.mean(values)) if values else -1.0

    order = sorted(names, key=heldout_mean)  # barh draws the first at the bottom: the best ends on top
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) * len(cells) / 2 + 1.5))
    height = 0.8 / len(cells)
    for j, (split, lang) in enumerate(cells):
        ys = np.arange(len(order)) + j * height
        ax.barh(ys, [value(n, split, lang) for n in order], height=height, label=f"{split} {lang}",
                alpha=1.0 if split == "heldout" else 0.55)
    ax.set_yticks(np.arange(len(order)) + 0.4 - height / 2, order)
    ax.set(xlabel="nDCG@10", xlim=(0, 1), title=f"query-set search, {report.get('dataset', '')}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
