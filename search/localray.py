"""The local Ray of a search: started in the background at ``lvsearch run``'s and ``demo``'s launch.

On 2 cores, ``lvsearch run`` spent ~6 s importing torch, Ray Tune, MLflow and Optuna (to check the
space and open the tracking store) with one core idle, and only then started Ray, whose own start
took ~5 s more. Started from a thread at launch instead, Ray comes up while the driver imports,
and the first trial starts ~2 s sooner (BENCHMARKS.md). Whoever needs Ray waits for that start
(:func:`wait_for_background`), and gets its error, if it failed, as their own; a command that
fails before it needs Ray waits for it too, then stops it (search.cli).

The thread stays parked until the process ends: Ray starts its processes with PR_SET_PDEATHSIG,
which Linux fires when the *thread* that started them exits, so a thread that returned would
take the GCS and the raylet with it.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from search import warm
from search.errors import RayStartError


class _NoThreadNotice(logging.Filter):
    """Drops Ray's warning that a ``ray.init`` outside the main thread sets no SIGTERM handler: the
    driver installs its own after Ray's start either way (search.interrupts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SIGTERM handler is not set")


class _Start:
    """One background start: its thread, whether it has ended, and its error."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lvsearch-ray-start", daemon=True)

    def _run(self) -> None:
        try:
            logging.getLogger("ray._private.worker").addFilter(_NoThreadNotice())
            start_local(None, self.verbose)
        except BaseException as error:  # handed over: raised where Ray is needed
            self.error = error
        finally:
            self.ended.set()
        threading.Event().wait()  # parked for good: see the module's docstring


_pending: _Start | None = None


def quiet(verbose: bool) -> dict[str, Any]:
    """``ray.init`` options: unless ``verbose``, the trial workers' output stays in Ray's session
    logs instead of the console (and so do the tracebacks Ray's workers print when it stops them)."""
    return {} if verbose else {"log_to_driver": False, "configure_logging": False}


def start_local(temp_dir: str | None, verbose: bool) -> None:
    """Start a local Ray sized to this machine with every service on loopback, unless this
    process has one already; :class:`RayStartError` if it does not start."""
    import ray

    if ray.is_initialized():
        return
    # A local Ray listens on 127.0.0.1 only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (without it,
    # it binds the host's external address; `_node_ip_address` alone does not help). Ray reads it
    # when imported, so the already-imported constant is switched too; child processes inherit
    # the variable. Only here: a cluster driver must advertise its real address.
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    warm.trials_use_idle_workers()
    try:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1",
                 **({"logging_level": "WARNING", "configure_logging": True} | quiet(verbose)), _temp_dir=temp_dir,
                 _system_config=warm.system_config(os.cpu_count() or 1, warm.memory_bytes()))
    except Exception as error:  # Ray's own message rarely says that it comes from Ray's start
        raise RayStartError(f"could not start a local Ray: {error}") from error


def start_in_background(verbose: bool) -> None:
    """Begin :func:`start_local` in a thread and return at once."""
    global _pending
    if _pending is None:
        _pending = _Start(verbose)
        _pending.thread.start()


def wait_for_background(raise_error: bool = True) -> None:
    """Block until a background start has ended (at once if none is under way); raise its error,
    once, unless told not to."""
    global _pending
    pending = _pending
    if pending is None:
        return
    pending.ended.wait()
    _pending = None  # only now: a wait that Ctrl-C broke leaves the start for the next one
    if pending.error is not None and raise_error:
        raise pending.error
