"""The pictures of a search report, one function each: a figure from plain data, saved as a PNG.

Every picture carries the search's caveats in its title (synthetic data, random models), as every
output of this project does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lvseg.report import pyplot

STATUS_COLOURS = {"completed": "#2ca02c", "pruned": "#1f77b4", "diverged": "#d62728", "failed": "#7f7f7f",
                  "interrupted": "#ff7f0e", "running": "#9467bd", "stopped": "#8c564b"}


def _figure(width: float = 7.0, height: float = 3.8, columns: int = 1):
    plt = pyplot()
    return plt, *plt.subplots(1, columns, figsize=(width, height), squeeze=False)


def _save(plt: Any, fig: Any, path: Path, title: str, caveats: str) -> Path:
    fig.suptitle(f"{title}\n{caveats}" if caveats else title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def best_so_far(trials: list[dict], metric: str, mode: str, path: Path, caveats: str) -> Path:
    """The best score so far against trial number and against wall time (completed trials)."""
    plt, fig, axes = _figure(columns=2, width=9)
    done = sorted((t for t in trials if t["score"] is not None), key=lambda t: t["number"])
    pick = max if mode == "max" else min
    for ax, key, label in ((axes[0][0], "number", "trial number"), (axes[0][1], "ended", "minutes since start")):
        ordered = sorted(done, key=lambda t: t[key])
        xs = [t[key] for t in ordered]
        best = [pick(t["score"] for t in ordered[:i + 1]) for i in range(len(ordered))]
        ax.scatter(xs, [t["score"] for t in ordered], s=12, color="#999999", label="trial")
        ax.step(xs, best, where="post", color="#d62728", label="best so far")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
    axes[0][0].xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize=7)
    return _save(plt, fig, path, f"best {metric} so far", caveats)


def importance(values: dict[str, float], path: Path, caveats: str, method: str) -> Path:
    plt, fig, axes = _figure(height=max(2.0, 0.45 * len(values) + 1.2))
    names = list(values)[::-1]
    axes[0][0].barh(names, [values[n] for n in names], color="#1f77b4")
    axes[0][0].set_xlabel(f"importance ({method})")
    return _save(plt, fig, path, "which parameters mattered", caveats)


def slices(trials: list[dict], params: Sequence[Any], metric: str, path: Path, caveats: str) -> Path:
    """The score against each searched parameter; log axes for log-scale parameters."""
    columns = max(1, min(3, len(params)))
    rows = math.ceil(len(params) / columns)
    plt = pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=(max(6.0, 3.2 * columns), 2.9 * rows), squeeze=False)
    scored = [t for t in trials if t["score"] is not None]
    for ax, param in zip(axes.flat, params, strict=False):
        have = [t for t in scored if t["params"].get(param.name) is not None]
        xs = [t["params"][param.name] for t in have]
        if param.type == "choice":
            labels = [str(v) for v in param.values]
            xs = [labels.index(str(x)) if str(x) in labels else -1 for x in xs]
            ax.set_xticks(range(len(labels)), labels, rotation=_choice_rotation(labels), fontsize=6)
            ax.set_xlim(-0.5, len(labels) - 0.5)  # every choice, a never-scored one too
        elif param.type in ("loguniform", "logint"):
            ax.set_xscale("log")
            # under a decade wide, matplotlib labels each minor tick in full and they overlap
            ax.tick_params(axis="x", which="both", labelsize=6, labelrotation=30)
        ax.scatter(xs, [t["score"] for t in have], s=10, c=[STATUS_COLOURS[t["status"].kind] for t in have])
        ax.set_xlabel(param.name, fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
    spare = list(axes.flat)[len(params):]
    for ax in spare:
        ax.set_visible(False)
    if scored:
        _status_legend(spare[0] if spare else axes.flat[0], {t["status"].kind for t in scored}, spare=bool(spare))
    return _save(plt, fig, path, f"{metric} against each parameter", caveats)


# Characters of choice labels that fit side by side under a slices panel (~3.2 in at 6 pt);
# beyond that they stand upright: tilted, long neighbours overlapped (the ten SAM strategies did).
LEVEL_CHARS = 40


def _choice_rotation(labels: list[str]) -> int:
    return 0 if sum(len(label) + 2 for label in labels) <= LEVEL_CHARS else 90


def _status_legend(ax: Any, kinds: set[str], spare: bool) -> None:
    """What each dot's colour says (how its trial ended): in a spare panel where the grid has one,
    else in the corner of ``ax``."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=STATUS_COLOURS.get(kind, "#000000"), label=kind)
               for kind in sorted(kinds)]
    if spare:
        ax.set_visible(True)
        ax.axis("off")
    ax.legend(handles=handles, fontsize=7, title="trial ended", title_fontsize=7, loc="center" if spare else "best")


def parallel(trials: list[dict], params: Sequence[Any], metric: str, mode: str, path: Path, caveats: str,
             top: int = 15) -> Path:
    """Parallel coordinates of the best ``top`` trials: each parameter scaled to [0, 1] (log for
    log parameters, index for choices), the score as the last axis."""
    plt, fig, axes = _figure(width=max(6.0, 1.3 * (len(params) + 1)))
    ax = axes[0][0]
    best = sorted((t for t in trials if t["score"] is not None), key=lambda t: t["score"], reverse=mode == "max")[:top]
    columns = [_scaled(best, p) for p in params] + [_scaled_scores(best)]
    colours = pyplot().cm.viridis(np.linspace(0, 1, max(1, len(best))))[::-1]
    gaps = False
    for i, _ in enumerate(best):
        # a param a trial did not draw (momentum under adam) is left out of its line, not a break in it
        drawn = [(x, c[i]) for x, c in enumerate(columns) if not math.isnan(c[i])]
        gaps = gaps or len(drawn) < len(columns)
        ax.plot(*zip(*drawn, strict=True), color=colours[i], alpha=0.8, marker="o", markersize=3)
    ax.vlines(range(len(columns)), 0, 1, color="#bbbbbb", linewidth=0.8, zorder=0)
    for x, ends in enumerate([_axis_labels(p) for p in params] + [_score_labels(best)]):
        for y, text in ends:
            ax.annotate(text, (x, y), xytext=(5, 0), textcoords="offset points", fontsize=6, ha="left",
                        va="center", color="#333333",
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
    ax.set_xticks(range(len(columns)), [p.name for p in params] + [metric], rotation=20, fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(columns) - 0.4)  # room for the last axis's values
    title = f"the {len(best)} best trials (brighter: better)"
    return _save(plt, fig, path, title + ("; no dot on an axis: not drawn for that trial" if gaps else ""), caveats)


def _axis_labels(param: Any) -> list[tuple[float, str]]:
    """Where each value sits on a parallel axis, as :func:`_scaled` places it: every choice, or a
    range's two ends (people must read which line took ``adam``, or what "high" lr was)."""
    if param.type == "choice":
        labels = [str(v) for v in param.values]
        return [(i / max(1, len(labels) - 1), label) for i, label in enumerate(labels)]
    return [(0.0, f"{param.low:.3g}"), (1.0, f"{param.high:.3g}")]


def _score_labels(trials: list[dict]) -> list[tuple[float, str]]:
    scores = [t["score"] for t in trials]
    return [(0.0, f"{min(scores):.3f}"), (1.0, f"{max(scores):.3f}")] if scores else []


def _scaled(trials: list[dict], param: Any) -> list[float]:
    values = [t["params"].get(param.name) for t in trials]
    if param.type == "choice":
        labels = [str(v) for v in param.values]
        return [labels.index(str(v)) / max(1, len(labels) - 1) if str(v) in labels else math.nan for v in values]
    low, high = param.low, param.high
    if param.type in ("loguniform", "logint"):
        low, high = math.log(low), math.log(high)
        values = [math.log(float(v)) if v is not None else None for v in values]
    return [(float(v) - low) / max(high - low, 1e-12) if v is not None else math.nan for v in values]


def _scaled_scores(trials: list[dict]) -> list[float]:
    scores = [t["score"] for t in trials]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    return [(s - low) / max(high - low, 1e-12) for s in scores]


def curves(histories: dict[str, list[tuple[int, float]]], statuses: dict[str, str], metric: str, path: Path,
           caveats: str) -> Path:
    """Every trial's metric per epoch, coloured by how it ended."""
    plt, fig, axes = _figure()
    ax = axes[0][0]
    for name, points in histories.items():
        if points:
            steps, values = zip(*sorted(points), strict=True)
            ax.plot(steps, values, color=STATUS_COLOURS.get(statuses[name], "#000000"), alpha=0.7, marker=".")
    for kind in sorted(set(statuses.values())):
        ax.plot([], [], color=STATUS_COLOURS.get(kind, "#000000"), label=kind)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return _save(plt, fig, path, f"learning curves ({metric})", caveats)


def per_video_boxes(groups: dict[str, list[float]], label: str, path: Path, caveats: str) -> Path:
    """Per-video Dice of the trials of each value (or pair of values) of the space's choices."""
    plt, fig, axes = _figure(width=max(6.0, 0.55 * len(groups) + 2), height=4.2)
    ax = axes[0][0]
    names = list(groups)
    ax.boxplot([groups[n] for n in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=6)
    ax.set_ylabel("Dice per video")
    return _save(plt, fig, path, f"Dice over videos by {label}", caveats)


def per_choice(values: dict[str, float], metric: str, label: str, path: Path, caveats: str) -> Path:
    plt, fig, axes = _figure(width=max(5.0, 0.5 * len(values) + 2))
    ax = axes[0][0]
    ax.bar(range(len(values)), list(values.values()), color="#ff7f0e")
    ax.set_xticks(range(len(values)), list(values), rotation=45, ha="right", fontsize=6)
    ax.set_ylabel(f"mean {metric}")
    return _save(plt, fig, path, f"{metric} by {label}", caveats)


def pareto(trials: list[dict], objectives: list[tuple[str, str]], path: Path, caveats: str) -> Path:
    """The first two objectives of every completed trial, the non-dominated ones joined."""
    plt, fig, axes = _figure(width=5.5, height=4.2)
    ax = axes[0][0]
    (x, _), (y, _) = objectives[:2]
    scored = [t for t in trials if t["front"]]
    ax.scatter([t["scores"][x] for t in scored], [t["scores"][y] for t in scored], s=14, color="#999999")
    front = sorted((t for t in scored if t["front"] == 1), key=lambda t: t["scores"][x])
    ax.plot([t["scores"][x] for t in front], [t["scores"][y] for t in front], color="#d62728", marker="o",
            label="non-dominated")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    return _save(plt, fig, path, "Pareto front", caveats)
