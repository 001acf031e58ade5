"""Figures of the lower level: the RL training curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: jobs have no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from hm3.core.io import atomic_file  # noqa: E402


def plot_training(frame, path: str | Path) -> None:
    """Reward per episode and its moving average: the RL training curve."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    window = max(1, min(16, len(frame) // 5))
    axes[0].scatter(frame["episode"], frame["reward"], s=8, alpha=0.4, label="episode")
    axes[0].plot(
        frame["episode"],
        frame["reward"].rolling(window, min_periods=1).mean(),
        color="C1",
        label=f"moving mean ({window})",
    )
    axes[0].set_xlabel("episode")
    axes[0].set_ylabel("episode reward R")
    axes[0].legend(fontsize=8)
    for column in ("policy_loss", "value_loss", "entropy"):
        if column in frame:
            axes[1].plot(frame["episode"], frame[column], label=column)
    axes[1].set_xlabel("episode")
    axes[1].set_title("PPO losses (per update)", fontsize=9)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
