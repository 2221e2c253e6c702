"""Curves of a run: loss terms and learning rates per step, validation metrics per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_NOT_LOSSES = {"kind", "epoch", "step", "elapsed_s", "skipped"}


def plot_run(log_path: Path, out_png: Path) -> Path | None:
    if not Path(log_path).is_file():
        return None
    entries = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line]
    train = [e for e in entries if e.get("kind") == "train"]
    val = [e for e in entries if e.get("kind") == "val"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [e["step"] for e in train]
    terms = sorted(
        {k for e in train for k in e if k not in _NOT_LOSSES and not k.startswith("lr_")}
    )
    for term in terms:
        axes[0].plot(steps, [e.get(term) for e in train], label=term)
    axes[0].set(title="loss terms", xlabel="step")
    for key in sorted({k for e in train for k in e if k.startswith("lr_")}):
        axes[1].plot(steps, [e[key] for e in train], label=key)
    axes[1].set(title="learning rate", xlabel="step", yscale="log")
    for key in ("R1", "R5", "R10", "mAP", "mINP"):
        if val:
            axes[2].plot([e["step"] for e in val], [e[key] for e in val], marker="o", label=key)
    axes[2].set(title="validation (%)", xlabel="step")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
