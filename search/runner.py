"""Run a search and end it truthfully: a Tune ``Tuner`` with the Optuna sampler and the scheduler,
MLflow parent and child runs, and an ending that every run shares.

Whatever stops a search (its last trial, an error in the driver, Ctrl-C, SIGTERM), the trials
that had not ended are marked ``interrupted``, every journal is delivered, the parent run gets a
terminal state, and the summary and :attr:`exit code <Ending.exit_code>` say what happened:
0 the search ran to its end; 1 it ran, but trials failed with errors (or the driver did, or the
tracking store kept what it was sent waiting); 130/143 it was interrupted (resumable).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from lvseg.status import INTERRUPTED, Status, failed, failed_from
from search import studies, tracking, views
from search.callbacks import TrackingCallback
from search.console import Console
from search.driver import Driver
from search.export import driver_alive, run_status
from search.interrupts import Interrupts
from search.journal import SEARCH, Journal, journals
from search.prepare import Prepared, check_resources, init_ray, prepare
from search.report import write_report
from search.samplers import PruneAwareOptunaSearch, build_sampler, build_scheduler
from search.space import SearchSpace, SpaceError, stored_space
from search.state import LOG_FILE, SearchState, default_storage
from search.summary import (
    close_parent,
    format_table,
    not_a_result,
    remaining,
    summarise,
    tracking_wait_s,
    trials_status,
)
from search.tags import CAVEATS_TAG
from search.trainable import TrialContext, run_trial

ORPHANED = "its driver was killed"
TOP_SHOWN = {"quiet": 3, "normal": 10, "verbose": 20}  # trials the closing table lists


def run_search(space: SearchSpace, data: str | None = None, name: str | None = None, samples: int | None = None,
               tracking_uri: str | None = None, storage: Path | None = None, address: str | None = None,
               cache_dir: Path | None = None, allow_missing: bool = False, driver: Driver | None = None,
               optuna_storage: str | None = None, warm_start: list[str] | None = None) -> dict[str, Any]:
    """Run a whole search; returns its summary (:func:`search.summary.summarise`) with its
    ``status`` and ``exit_code``. Raises (and leaves nothing behind) if it cannot start.
    ``warm_start`` names earlier searches whose ended trials the sampler is told first."""
    driver = driver or Driver()
    ready = prepare(space, data, name, samples, tracking_uri, storage, address, cache_dir, allow_missing,
                    verbose=driver.detail == "verbose", optuna_storage=optuna_storage)
    state = _start(ready)
    log = _log_to_folder(driver, state.folder(ready.storage))
    print(f"search {state.name}: {state.samples} trials of {space.recipe} ({space.search['sampler']} sampler, "
          f"{space.search['scheduler']} scheduler); tracking {state.tracking_uri}{log}", flush=True)
    if ready.caveats:  # before any trial's score scrolls by
        print(not_a_result("; ".join(ready.caveats)), flush=True)
    return _execute(space, state, ready.storage, driver, restore=False, warm_start=warm_start or [])


def _log_to_folder(driver: Driver, folder: Path) -> str:
    """Send the libraries' logs to the search's log file now that it has a folder; what to print."""
    if driver.logs is None:
        return ""
    driver.logs.to_file(folder / LOG_FILE, _ray_logs())
    return f"; log {folder / LOG_FILE}"


def _ray_logs() -> str | None:
    try:
        from ray._private import worker

        return worker._global_node.get_logs_dir_path()
    except Exception:  # a Ray without that internal: the log file simply does not say
        return None


def _start(ready: Prepared) -> SearchState:
    """The parent run (space YAML, skipped videos) and the search's folder: the search exists now."""
    space = ready.space
    mlflow = tracking.client(ready.uri)
    parent = tracking.start_search_run(mlflow, ready.uri, ready.name, {
        "recipe": space.recipe, "sampler": space.search["sampler"], "scheduler": space.search["scheduler"],
        "metric": ",".join(space.metric), "mode": ",".join(space.mode), "data_hash": ready.data_hash,
        tracking.SAMPLES_TAG: str(ready.samples), tracking.DRIVER_TAG: _driver(),
        CAVEATS_TAG: "; ".join(ready.caveats)}, space.text, space.source)
    _log_space(mlflow, parent, space)
    views.save_trials_view(mlflow, tracking.experiment_id(mlflow, ready.uri), ready.name, parent, space.metric,
                           space.mode, [p.name for p in space.params])
    if ready.skipped:
        _log_skipped(mlflow, parent, ready.skipped)
    state = SearchState(ready.name, space.source, space.text, ready.root, ready.cache_dir, ready.uri, parent,
                        ready.samples, ready.allow_missing, ready.optuna_storage)
    state.save(ready.storage)
    return state


def _log_space(mlflow: Any, parent: str, space: SearchSpace) -> None:
    """The space on the parent run, as params people can read in the runs table: each fixed value
    (``fixed.<key>``) and each searched range (``searched.<key>``)."""
    params = {f"fixed.{k}": v for k, v in space.fixed.items()}
    params.update({f"searched.{p.name}": p.describe() for p in space.params})
    tracking.log_params(mlflow, parent, params)


def _log_skipped(mlflow: Any, parent: str, skipped: dict[str, str]) -> None:
    """Videos left out of the frame store: on the console, as a tag and as skipped_videos.txt."""
    lines = [f"{video}: {why}" for video, why in sorted(skipped.items())]
    print(f"{len(lines)} video(s) left out of this search (listed in the parent run's skipped_videos.txt):")
    for line in lines:
        print(f"  {line}")
    mlflow.set_tag(parent, "skipped_videos", str(len(lines)))
    mlflow.log_text(parent, "\n".join(lines) + "\n", "skipped_videos.txt")


def _driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def resume_search(name: str, storage: Path | None = None, address: str | None = None,
                  driver: Driver | None = None) -> dict[str, Any]:
    """Continue an interrupted search (Ctrl-C, SIGTERM, a killed driver or machine): unfinished
    and errored trials resume from their checkpoints, in their MLflow runs."""
    driver = driver or Driver()
    storage = (storage or default_storage()).resolve()
    state = SearchState.load(storage, name)
    space, refused = stored_space(state.space_text, state.space_file)
    if refused:  # the search ran under an older version, whose recipe took what today's does not
        raise SpaceError(f"search {name} cannot be resumed: today's {space.recipe} recipe refuses the space it "
                         f"ran with ({refused}); `lvsearch report` and `lvsearch export` still work on it")
    mlflow = tracking.open_store(state.tracking_uri)
    parent = mlflow.get_run(state.parent_run_id)
    if run_status(parent).kind == "running" and driver_alive(parent):
        raise ValueError(f"search {name} is still running (driver {parent.data.tags.get(tracking.DRIVER_TAG)})")
    ended, planned = remaining(mlflow, state)
    if run_status(parent).kind == "completed" and ended >= planned:
        print(f"search {name} ran to its end: nothing to resume")
        return {"name": name, "status": run_status(parent), "exit_code": 0, "rows": [], "counts": {}}
    init_ray(address, verbose=driver.detail == "verbose")
    log = _log_to_folder(driver, state.folder(storage))
    check_resources(space, local=address is None)
    print(f"search {name} was interrupted: {planned - ended} of {planned} trials remain; resuming them{log}",
          flush=True)
    mlflow.update_run(state.parent_run_id, status="RUNNING")
    tracking.set_tags(mlflow, state.parent_run_id, {tracking.STATUS_TAG: "running", tracking.DRIVER_TAG: _driver()})
    return _execute(space, state, storage, driver, restore=True, samples=planned - ended)


def _tuner(space: SearchSpace, state: SearchState, storage: Path, callbacks: list, restore: bool, samples: int,
           warm_start: list[str]):
    """A Tuner for the search: restored from its saved state when resuming (a search whose
    driver died before Tune saved any gets a fresh one for the ``samples`` trials left)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    context = TrialContext(state.name, state.data_root, state.cache_dir, state.allow_missing, state.tracking_uri,
                           state.parent_run_id, str(state.journal_dir(storage)), space.metric, space.mode,
                           tuple(p.name for p in space.params))
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context),
                                    {"cpu": space.resources["cpu"], "gpu": space.resources["gpu"]})
    if restore and tune.Tuner.can_restore(str(state.folder(storage))):
        # callbacks are not saved with the experiment: the restored Tuner gets this driver's
        tuner = tune.Tuner.restore(str(state.folder(storage)), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
        tuner._local_tuner._run_config.callbacks = callbacks
        return tuner, None
    threads = max(1, int(space.resources["cpu"]))
    metric = list(space.metric) if space.multi_objective else space.metric[0]
    mode = list(space.mode) if space.multi_objective else space.mode[0]
    searcher = PruneAwareOptunaSearch(space=space.define_by_run({"threads": threads}), metric=metric, mode=mode,
                                      sampler=build_sampler(space), study_name=state.name,
                                      storage=studies.storage(state.optuna_storage) if state.optuna_storage else None)
    searcher._ot_study.set_user_attr("recipe", space.recipe)
    searcher._ot_study.set_user_attr("metric", ",".join(space.metric))
    for line in studies.warm_start(searcher._ot_study, space, state.tracking_uri, warm_start):
        print(line, flush=True)
    tune_config = tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.search["concurrency"]),
        scheduler=build_scheduler(space), num_samples=samples, reuse_actors=True,
        time_budget_s=space.search["time_budget_s"], metric=space.metric[0], mode=space.mode[0])
    run_config = tune.RunConfig(
        name=state.name, storage_path=str(storage), verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=space.search["max_failures"]),
        callbacks=callbacks)
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config), searcher


def _execute(space: SearchSpace, state: SearchState, storage: Path, driver: Driver,
             restore: bool, samples: int | None = None, warm_start: list[str] | None = None) -> dict[str, Any]:
    """Run the Tuner; then, however it stopped, end the search (:func:`_end`)."""
    interrupts = driver.interrupts
    callback = TrackingCallback(state.journal_dir(storage), state.tracking_uri, state.parent_run_id, state.name)
    console = Console(space.metric[0], space.mode[0], samples or state.samples, tuple(p.name for p in space.params),
                      driver.detail)
    interrupts.install()  # again: ray.init replaced our SIGTERM handler with its own
    searcher, error = None, None
    try:
        tuner, searcher = _tuner(space, state, storage, [callback, console], restore, samples or state.samples,
                                 warm_start or [])
        tuner.fit()
    except KeyboardInterrupt:
        pass  # a second Ctrl-C, or one outside fit: interrupts.signum says which
    except Exception as caught:
        error = caught
        _write_traceback(state.folder(storage) / LOG_FILE)
    return _end(space, state, storage, callback, searcher, driver, error)


def _write_traceback(path: Path) -> None:
    with path.open("a") as handle:
        handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n{traceback.format_exc()}\n")


def _end(space: SearchSpace, state: SearchState, storage: Path, callback: TrackingCallback,
         searcher: PruneAwareOptunaSearch | None, driver: Driver, error: Exception | None) -> dict[str, Any]:
    interrupts = driver.interrupts
    callback.close()
    for trial_id in callback.unfinished():  # their runs reopen when the search resumes
        callback.finish(trial_id, INTERRUPTED)
    folder = state.journal_dir(storage)
    waiting = _deliver(journals(folder, state.tracking_uri, state.parent_run_id, state.name))
    if waiting:
        ending = INTERRUPTED if interrupts.signum is not None else (failed_from(error) if error else None)
        return _tracking_down(space, state, storage, waiting, interrupts, ending)
    _close_orphans(state, callback)
    summary = summarise(space, state)
    status = _search_status(summary, interrupts, error, storage / state.name / LOG_FILE)
    study = searcher._ot_study if searcher is not None else _study(state)
    if study is not None:  # what the Optuna study saw: pruned trials must be PRUNED, not COMPLETE
        if status.kind != "interrupted":
            studies.fail_running(study)
        trials = study.get_trials(deepcopy=False)
        summary["optuna"] = {s: sum(t.state.name == s for t in trials) for s in {t.state.name for t in trials}}
    close_parent(state, storage, summary, status)
    summary.update(status=status, exit_code=_exit_code(status, interrupts))
    summary["report"] = _report(state, storage)
    print(format_table(summary, limit=TOP_SHOWN[driver.detail]))
    print(_closing_line(state, summary, status))
    if summary["report"] is not None:
        print(f"report: {summary['report']}")
    return summary


def _report(state: SearchState, storage: Path) -> Path | None:
    """The search's report, written beside its state and logged to its parent run (``report/``).
    A report that fails is said in one line; the search's ending stands."""
    try:
        page = write_report(state.tracking_uri, state.name, state.folder(storage) / "report")
    except Exception as error:
        _write_traceback(state.folder(storage) / LOG_FILE)
        print(f"report of {state.name} failed: {tracking.first_line(error)} (traceback in "
              f"{state.folder(storage) / LOG_FILE})")
        return None
    journal = Journal(state.journal_dir(storage), SEARCH, state.tracking_uri, state.parent_run_id, state.name)
    for path in [*sorted(page.parent.glob("*.png")), page]:
        journal.artifact(SEARCH, path, "report")
    journal.deliver_within(tracking_wait_s())
    return page


def _study(state: SearchState) -> Any:
    """The search's persistent Optuna study (None for a search from before studies were kept)."""
    if not state.optuna_storage:
        return None
    import optuna

    return optuna.load_study(study_name=state.name, storage=studies.storage(state.optuna_storage))


def _close_orphans(state: SearchState, callback: TrackingCallback) -> None:
    """Child runs still RUNNING that this driver never started belong to trials of a driver that
    was killed (SIGKILL, a lost machine): Tune may not have saved them before it died, so they
    may never run again; they end as interrupted, saying why."""
    mlflow = tracking.client(state.tracking_uri)
    for run in tracking.trial_runs(mlflow, state.tracking_uri, state.parent_run_id):
        if run.info.status == "RUNNING" and run.data.tags.get(tracking.TRIAL_TAG) not in callback.started:
            tracking.finish_run(mlflow, run.info.run_id, Status("interrupted", reason=ORPHANED))


def _deliver(pending: list[Journal]) -> int:
    """Deliver every trial journal, waiting up to tracking_wait_s() for a store that is down;
    returns how many operations still wait."""
    deadline = time.monotonic() + tracking_wait_s()
    waiting = 0
    for journal in pending:
        waiting += journal.deliver_within(max(0.0, deadline - time.monotonic()))
    return waiting


def _search_status(summary: dict[str, Any], interrupts: Interrupts, error: Exception | None, log: Path) -> Status:
    if interrupts.signum is not None:
        return INTERRUPTED
    if error is not None:
        return failed(f"{tracking.first_line(error)} (traceback in {log})")
    return trials_status(summary)


def _exit_code(status: Status, interrupts: Interrupts) -> int:
    if status.kind == "interrupted":
        return interrupts.exit_code
    return 0 if status.outcome else 1


def _closing_line(state: SearchState, summary: dict[str, Any], status: Status) -> str:
    ended = sum(v for k, v in summary["counts"].items() if k not in ("running", "interrupted"))
    if status.kind == "interrupted":
        return (f"search {state.name} interrupted after {ended} of {state.samples} trials: "
                f"`lvsearch resume {state.name}` continues it")
    if status.kind == "failed":
        return f"search {state.name} {status}"
    return f"search {state.name} completed: {ended} trials"


def _tracking_down(space: SearchSpace, state: SearchState, storage: Path, waiting: int, interrupts: Interrupts,
                   ending: Status | None) -> dict[str, Any]:
    """The trials ran but the tracking store does not answer: what could not be sent waits in the
    journals, and `lvsearch sync` sends it and closes the parent run once the store is back."""
    if ending is not None:
        Journal(state.journal_dir(storage), SEARCH, state.tracking_uri, state.parent_run_id,
                state.name).end(SEARCH, ending)
    print(f"search {state.name}: the tracking store {state.tracking_uri} does not answer; {waiting} tracking "
          f"operation(s) wait in {state.journal_dir(storage)}: `lvsearch sync {state.name}` sends them once it "
          f"is back")
    status = ending or failed(f"tracking store {state.tracking_uri} did not answer; run `lvsearch sync {state.name}`")
    return {"name": state.name, "metric": space.metric[0], "rows": [], "counts": {}, "status": status,
            "exit_code": interrupts.exit_code if status.kind == "interrupted" else 1}
