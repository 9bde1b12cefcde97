"""A contact sheet of traced frames with their masks outlined, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvseg.framestore import FrameStore
from lvseg.report import pyplot


def write_preview(store: FrameStore, out: str | Path, videos: int = 6, title: str = "") -> Path:
    """Plot the ES and ED frames of the first ``videos`` videos with the traced LV outlined."""
    plt = pyplot()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = min(videos, len(store))
    fig, axes = plt.subplots(2, count, figsize=(2.1 * count, 5.0), squeeze=False)
    for column in range(count):
        row = store.table.iloc[column]
        for phase_index, phase in enumerate(("ES", "ED")):
            ax = axes[phase_index, column]
            ax.imshow(store.images[column, phase_index])
            ax.contour(np.asarray(store.masks[column, phase_index], dtype=float), levels=[0.5],
                       colors="#ff3b30", linewidths=1.2)
            frame = row[f"{phase.lower()}_frame"]
            ax.set_title(f"{phase} frame {frame}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, column].set_xlabel(f"{row['video'][:10]}…\n{row['split']} EF {row['ef']:.1f}%",
                                   fontsize=7)
    fig.suptitle(title or f"traced frames (red: expert LV tracing) - {store.path.name}", fontsize=9)
    fig.tight_layout(h_pad=1.2)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
