"""Plots a person would rather look at than read."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_target


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path) -> Path | None:
    """Loss (and learning rate) against step from a metrics JSONL file; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path, out_png = Path(metrics_path), Path(out_png)
    if not metrics_path.is_file():
        return None
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, [r["loss"] for r in records], color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in records], color="tab:orange", alpha=0.6, label="lr")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    ax.set_title("CrossJEPA pretraining")
    fig.tight_layout()
    with atomic_target(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out_png
