"""What a trial tells Tune besides its metrics, how the driver reads an ending from it, and what
the search tells a trial besides its config.

Every result a trial reports carries ``status`` (the trial's :class:`~lvseg.status.Status` text:
``running`` for an epoch that is not its last, then ``completed``, ``diverged at epoch N: ...`` or
``failed: ...``) and ``epochs`` (how many it plans). A trial whose last word was ``running`` was
stopped by the scheduler: it was pruned at that epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lvseg.status import Status, failed, pruned

STATUS = "status"
EPOCHS = "epochs"
TRIAL_NUMBER = "_trial_number"  # Optuna's trial number, passed to the trial for a readable run name


def final_status(result: Mapping[str, Any] | None) -> Status:
    """How a trial ended, from the last result it reported."""
    if not result:
        return failed("no result reported")
    status = Status.parse(str(result.get(STATUS, "running")))
    return pruned(int(result.get("epoch", 0))) if status.kind == "running" else status


def worst(objectives: list[tuple[str, str]]) -> dict[str, float]:
    """The worst value of every (metric, mode): what a trial that ended without a score reports, so
    that Tune (which insists on the metric) and the sampler rank it last."""
    return {metric: (-math.inf if mode == "max" else math.inf) for metric, mode in objectives}
