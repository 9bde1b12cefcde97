"""Parts of the search report that need no search: when parameter importance is estimated."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from lvseg.status import COMPLETED, pruned
from search.report import IMPORTANCE_TRIALS, TOP_PAIRED, _importance, _omitted, _paired, _searched
from search.space import parse_space

SPACE = parse_space({"recipe": "baseline", "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                                                       "batch_size": {"type": "choice", "values": [2, 4, 8]}}},
                    "space.yaml", "")


def _trials(count: int) -> list[dict]:
    """Trials whose score follows lr alone: batch size is noise."""
    draw = random.Random(0)
    trials = []
    for _ in range(count):
        lr, batch = 10 ** draw.uniform(-4, -1), draw.choice([2, 4, 8])
        trials.append({"params": {"lr": lr, "batch_size": batch}, "score": 1.0 - abs(lr - 1e-2) * 5})
    return [*trials, {"params": {"lr": 1e-3, "batch_size": 2}, "score": None}]  # a failed trial counts for nothing


def test_importance_finds_the_parameter_that_decides_the_score() -> None:
    weights, method = _importance(SPACE, _trials(40))
    assert method == "PED-ANOVA" and set(weights) == {"lr", "batch_size"}
    assert weights["lr"] > weights["batch_size"]
    assert _omitted(SPACE, _trials(40)) == ""


def test_too_few_trials_give_no_importance_and_the_report_says_why() -> None:
    few = _trials(IMPORTANCE_TRIALS - 1)
    assert _importance(SPACE, few) == ({}, "")
    assert _omitted(SPACE, few) == (f"Which parameters mattered: not estimated, PED-ANOVA needs at least "
                                    f"{IMPORTANCE_TRIALS} trials with a score and this search has "
                                    f"{IMPORTANCE_TRIALS - 1}.")


CONDITIONAL = parse_space({"recipe": "baseline", "params": {
    "momentum": {"type": "uniform", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
    "optimizer": {"type": "choice", "values": ["sgd", "adam"]},
    "step_gamma": {"type": "uniform", "low": 0.1, "high": 0.5, "when": {"schedule": "step"}},
    "schedule": {"type": "choice", "values": ["step", "cosine"], "when": {"optimizer": "sgd"}}}},
    "space.yaml", "")


def test_a_conditional_param_whose_condition_failed_is_no_drawn_value() -> None:
    """A trial logs its whole config: under adam its momentum is the recipe's default, and so is
    anything conditioned on a param that was itself not drawn."""
    adam = _searched({"optimizer": "adam", "momentum": "0.9", "schedule": "step", "step_gamma": "0.1"},
                     CONDITIONAL.params)
    assert adam == {"optimizer": "adam", "momentum": None, "schedule": None, "step_gamma": None}
    sgd = _searched({"optimizer": "sgd", "momentum": "0.95", "schedule": "step", "step_gamma": "0.3"},
                    CONDITIONAL.params)
    assert sgd == {"optimizer": "sgd", "momentum": 0.95, "schedule": "step", "step_gamma": 0.3}


def test_estimating_importance_says_nothing_on_the_console() -> None:
    """`lvsearch report` printed Optuna's "A new study created in memory" for its PED-ANOVA study:
    what reaches Optuna's handlers at its default verbosity (INFO), which a console would show."""
    said: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = said.append
    optuna_logger = logging.getLogger("optuna")
    optuna_logger.addHandler(listener)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        weights, _ = _importance(SPACE, _trials(40))
        after = optuna.logging.get_verbosity()
    finally:
        optuna_logger.removeHandler(listener)
        optuna.logging.set_verbosity(before)
    assert weights
    assert [record.getMessage() for record in said] == []
    assert after == optuna.logging.INFO  # the report put Optuna's verbosity back as it found it


ESTIMATE_IN_A_FRESH_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from test_report import SPACE, _trials
from search.report import _importance
weights, method = _importance(SPACE, _trials(40))
print(method, sorted(weights), "sklearn" in sys.modules)
import sklearn.ensemble  # still importable for anything else
"""


def test_importance_is_estimated_without_importing_scikit_learn() -> None:
    """optuna.importance imports scikit-learn (2.2 s, at the end of every search) for fANOVA alone."""
    done = subprocess.run([sys.executable, "-c", ESTIMATE_IN_A_FRESH_PROCESS, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[0] == "PED-ANOVA ['batch_size', 'lr'] False"


def _per_video(overlap: float, videos: int = 40) -> pd.DataFrame:
    """A per-video table whose every frame has 100 traced pixels and ``overlap`` of them found."""
    found = np.random.default_rng(0).binomial(100, overlap, size=(videos, 2))
    return pd.DataFrame({"video": [f"v{i}" for i in range(videos)],
                         **{f"{k}_{phase}": (found[:, j] if k == "inter" else np.full(videos, 100))
                            for j, phase in enumerate(("es", "ed")) for k in ("inter", "pred_area", "traced_area")}})


def test_every_row_of_the_best_trials_says_its_paired_difference_or_why_there_is_none() -> None:
    """A blank cell read as a missing result: each row gives the difference to the best with its
    interval (video by video), or the reason it has none (pruned, no table, other videos, beyond the
    top ten)."""
    rows = [{"run_id": f"r{i}", "status": COMPLETED} for i in range(TOP_PAIRED + 2)]
    rows[2]["status"] = pruned(1)
    tables = {"r0": _per_video(0.9), "r1": _per_video(0.6), "r3": _per_video(0.6, videos=30)}
    cells = _paired(rows, tables)
    assert cells["r0"] == "(the best)"
    difference, interval = cells["r1"].split(" ", 1)
    assert -0.5 < float(difference) < -0.2 and interval.startswith("(-") and " to -" in interval
    assert cells["r2"] == "n/a: pruned"
    assert cells["r3"] == "n/a: not the same validation videos"
    assert cells["r4"] == "n/a: this trial has no per-video table"
    assert cells[f"r{TOP_PAIRED}"] == f"n/a: the {TOP_PAIRED} best only"
    tables["r3"] = _per_video(0.6).rename(index=lambda i: 39 - i).sort_index()  # the same videos, reordered
    assert _paired(rows, tables)["r3"] == cells["r1"]
    tables["r3"]["video"] = [f"w{i}" for i in range(40)]  # as many videos, other ones
    assert _paired(rows, tables)["r3"] == "n/a: not the same validation videos"
    rows[0]["status"] = pruned(2)  # a best trial stopped early is nobody's reference
    assert _paired(rows, tables)["r1"] == "n/a: the best did not complete"
