"""Plots of the retrieval evaluation: training curves and a retrieval example grid (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from crossrec_core.plots import pyplot, save_figure

__all__ = ["plot_training_curves", "plot_retrieval_grid"]


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
