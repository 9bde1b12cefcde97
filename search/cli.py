"""``lvsearch``: launch, resume, list, export and browse searches.

    lvsearch run SPACE.yaml [--data ROOT] [--name NAME] [--samples N] [--address ADDR] [--warm-start NAME]
    lvsearch resume NAME
    lvsearch sync NAME
    lvsearch list
    lvsearch export NAME [--top K | --pareto] --out FILE.yaml
    lvsearch report NAME [--out DIR]
    lvsearch ui [--port 5000]
    lvsearch demo

Every command takes --tracking-uri (default $MLFLOW_TRACKING_URI, else sqlite:///./mlruns.db) and
--storage (default $LVSEARCH_STORAGE, else ./lvsearch-runs), so each finds a search wherever it ran;
run and resume take --address (default $RAY_ADDRESS, else a local Ray on this machine).

Exit codes: 0 the search ran to its end (every trial completed, pruned or diverged); 1 it ran, but
trials failed with errors (the summary names them), or the driver failed; 2 nothing started (bad
space, data, tracking store or resources: nothing is left behind, run it again once mended);
130 after Ctrl-C and 143 after SIGTERM (resumable: `lvsearch resume NAME`).
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from search import localray
from search.driver import Driver
from search.errors import NotStarted
from search.interrupts import HANDLED, Interrupted

NOTHING_STARTED = 2
# bad input (a SpaceError or ConfigError is a ValueError): one line, exit 2
ERRORS = (OSError, LookupError, ValueError)


def _address(command: argparse.ArgumentParser) -> None:
    # Ray's own convention, which `ray job submit` relies on to point its entrypoint at the cluster
    command.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                         help="join a Ray cluster (e.g. auto, or HOST:6379); default: $RAY_ADDRESS when set, "
                              "else a local Ray on this machine")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (sqlite:///..., http://...)")
    parser.add_argument("--storage", type=Path, default=None, help="folder for Ray Tune's search state")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvsearch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a search from a space YAML")
    run.add_argument("space", type=Path)
    run.add_argument("--data", default=None, help="EchoNet folder (default: the space's `data:`)")
    run.add_argument("--name", default=None, help="search name (default: <space>-<time>)")
    run.add_argument("--samples", type=int, default=None, help="number of trials (default: the space's)")
    _address(run)
    run.add_argument("--cache-dir", type=Path, default=None, help="frame-store and feature caches")
    run.add_argument("--allow-missing", action="store_true", help="skip (and report) broken or missing videos")
    run.add_argument("--optuna-storage", default=None,
                     help="Optuna RDB storage of the search's study (default: optuna.db beside the MLflow store)")
    run.add_argument("--warm-start", default=None, metavar="NAME[,NAME...]",
                     help="tell the sampler the ended trials of these earlier searches first")
    resume = commands.add_parser("resume", help="continue an interrupted search")
    resume.add_argument("name")
    _address(resume)
    sync = commands.add_parser("sync", help="send what a search could not log while its tracking store was down")
    sync.add_argument("name")
    commands.add_parser("list", help="searches with their best trial")
    export = commands.add_parser("export", help="write the best trial's resolved config")
    export.add_argument("name")
    export.add_argument("--top", type=int, default=1, help="K > 1 writes a folder of the K best, ranked")
    export.add_argument("--pareto", action="store_true", help="a folder of every non-dominated trial (several metrics)")
    export.add_argument("--out", type=Path, required=True)
    report = commands.add_parser("report", help="one HTML page (and its PNGs) of a search's trials")
    report.add_argument("name")
    report.add_argument("--out", type=Path, default=None,
                        help="folder (default: the search's own report/ folder if it is here, else ./report-NAME)")
    ui = commands.add_parser("ui", help="MLflow UI on this store, bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    ui.add_argument("--workers", type=int, default=1,
                    help="server processes (default 1: answers in ~9 s on 2 cores, where MLflow's 4 took ~15 s)")
    demo = commands.add_parser("demo", help="synthetic data, every demo space, best configs")
    demo.add_argument("--out", type=Path, default=Path("demo-output"))
    for command in (run, resume, sync, commands.choices["list"], export, report, ui, demo):
        _common(command)
    for command in (run, resume, demo):
        command.add_argument("--verbose", action="store_true",
                             help="every trial event, and the libraries' own logs, on the console too")
    return parser


def cmd_run(args: argparse.Namespace, driver: Driver) -> int:
    if args.ray_at_launch and args.address is None:  # a local Ray comes up while the space is checked
        localray.start_in_background(verbose=driver.detail == "verbose")
    from search.space import load_space

    space = load_space(args.space)  # validated before anything starts, and before MLflow is imported
    from search.runner import run_search  # MLflow: ~2 s that a mistyped space need not wait for

    warm = [name for name in (args.warm_start or "").split(",") if name]
    return run_search(space, args.data, args.name, args.samples, args.tracking_uri, args.storage, args.address,
                      args.cache_dir, args.allow_missing, driver, args.optuna_storage, warm)["exit_code"]


def cmd_resume(args: argparse.Namespace, driver: Driver) -> int:
    from search.runner import resume_search

    return resume_search(args.name, args.storage, args.address, driver)["exit_code"]


def cmd_sync(args: argparse.Namespace, driver: Driver) -> int:
    from search.sync import sync_search

    return sync_search(args.name, args.storage)


def cmd_list(args: argparse.Namespace, driver: Driver) -> int:
    from search import tracking
    from search.export import search_summaries

    uri = args.tracking_uri or tracking.default_tracking_uri()
    rows = search_summaries(uri)
    if not rows:
        print(f"no searches in {uri}")
        return 0
    print(f"{'search':<36} {'recipe':<13} {'status':<11} {'trials':>9}  {'best':>7}  {'95% interval':<13}  best trial")
    for row in rows:
        best = row["best"]
        score = "-" if best is None else f"{best['score']:.4f}"
        interval = f"{best['low']:.3f}-{best['high']:.3f}" if best is not None and best["low"] is not None else ""
        print(f"{row['name']:<36} {row['recipe'] or '-':<13} {row['status'].kind:<11} {row['ended']:>4}/"
              f"{row['planned']:<4}  {score:>7}{'*' if row['caveats'] else ' '} {interval:<13}  "
              f"{best['name'] if best else '-'} ({row['metric']}){_also(row)}")
    caveated = [row for row in rows if row["caveats"]]
    if caveated:
        print("* not a result:")
        for row in caveated:
            print(f"  {row['name']}: {row['caveats']}")
    for row in rows:
        if row["status"].kind == "interrupted":
            print(f"{row['name']} was interrupted: {row['planned'] - row['ended']} of {row['planned']} trials "
                  f"remain (`lvsearch resume {row['name']}`)")
    return 0


def _also(row: dict) -> str:
    """What a single best hides: trials tied with it, or the Pareto front of a several-metric search."""
    if row["objectives"] > 1:
        return f"; {row['front']} non-dominated"
    return f"; {row['tied']} tied" if row["tied"] else ""


def cmd_export(args: argparse.Namespace, driver: Driver) -> int:
    from search import tracking
    from search.export import export_best

    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    done = export_best(args.tracking_uri or tracking.default_tracking_uri(), args.name, args.out, args.top, args.pareto)
    if done["caveats"]:
        print(f"not a result: {done['caveats']}")
    for path in done["paths"]:
        print(f"wrote {path}")
    best = done["best"]
    if done["tied"]:
        print(f"{done['tied']} other trial(s) are tied with {best['name']}: their 95% intervals overlap its "
              f"{done['metric']} interval, so these videos cannot tell them apart (`--top {done['tied'] + 1}` "
              f"writes them all, ranked)")
    if done["objectives"] > 1 and not args.pareto:
        print(f"{done['front']} trial(s) are non-dominated over this search's metrics: `--pareto` writes them all")
    print(f"retrain with: lvseg train {done['paths'][0]}")
    return 0


def cmd_report(args: argparse.Namespace, driver: Driver) -> int:
    from search import tracking
    from search.report import write_report
    from search.state import default_storage

    own = (args.storage or default_storage()) / args.name
    out = args.out or (own / "report" if own.is_dir() else Path(f"report-{args.name}"))
    print(f"wrote {write_report(args.tracking_uri or tracking.default_tracking_uri(), args.name, out)}")
    return 0


def cmd_ui(args: argparse.Namespace, driver: Driver) -> int:
    from search import tracking, ui, views

    uri = args.tracking_uri or tracking.default_tracking_uri()
    if not tracking.is_local(uri):
        print(f"this search logs to a tracking server: open {uri}")
        return 0
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be 1-65535, got {args.port}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    experiment = tracking.find_experiment(tracking.open_store(uri))
    where = f"#/experiments/{experiment}/runs" if experiment is not None else ""
    ui.check_port_free(args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    # the runs table directly: MLflow 3's experiment page otherwise opens on its GenAI overview
    print(f"MLflow UI for {uri}: {base}/{where} (expand a search's row to see its trials); Ctrl-C stops it")
    for name in _recent_searches(uri, experiment):
        print(f"  {name}'s trials, ranked, with intervals and status: {views.trials_url(base, experiment, name)}")
    sys.stdout.flush()
    return ui.serve(uri, args.host, args.port, args.workers)


def _recent_searches(uri: str, experiment: str | None, shown: int = 5) -> list[str]:
    from search import tracking

    if experiment is None:
        return []
    runs = tracking.search_parent_runs(tracking.open_store(uri), experiment, limit=shown)
    return [run.data.tags.get(tracking.SEARCH_TAG, run.info.run_name) for run in runs]


def cmd_demo(args: argparse.Namespace, driver: Driver) -> int:
    if args.ray_at_launch:  # a local Ray comes up while the synthetic folder is written
        localray.start_in_background(verbose=driver.detail == "verbose")
    from search.demo import run_demo

    return run_demo(args.out, args.tracking_uri, args.storage, driver)


COMMANDS = {"run": cmd_run, "resume": cmd_resume, "sync": cmd_sync, "list": cmd_list, "export": cmd_export,
            "report": cmd_report, "ui": cmd_ui, "demo": cmd_demo}


SEARCHING = ("run", "resume", "demo")  # commands that run searches: their console is managed


def main(argv: list[str] | None = None, ray_at_launch: bool = False) -> int:
    """The command in ``argv``; returns its exit code. With ``ray_at_launch`` (the console script),
    `lvsearch run` and `demo` start their local Ray in the background at once (search.localray); in-process
    callers keep the plain order, in which Ray starts only once the search is ready for it."""
    args = build_parser().parse_args(argv)
    args.ray_at_launch = ray_at_launch
    if args.command in SEARCHING:
        detail = "verbose" if args.verbose else ("quiet" if args.command == "demo" else "normal")
        driver = Driver.for_command(detail)
    else:
        driver = Driver()
    interrupts = driver.interrupts
    interrupts.install()
    code, line = 1, None  # what an exception that escapes _dispatch (SystemExit) leaves
    try:
        code, line = _dispatch(args, driver)
    finally:
        _end(args.command, line)
        interrupts.restore()
        if driver.logs is not None:
            driver.logs.close()
    return code


def _dispatch(args: argparse.Namespace, driver: Driver) -> tuple[int, str | None]:
    """Run the command; every way it can end becomes an exit code and at most one line, which
    :func:`_end` prints: a signal while it is printed must not turn it into a traceback."""
    try:
        return COMMANDS[args.command](args, driver), None
    except ERRORS as error:
        return NOTHING_STARTED, f"lvsearch {args.command}: error: {error}"
    except KeyboardInterrupt as stop:
        signum = int((stop.signum if isinstance(stop, Interrupted) else driver.interrupts.signum) or signal.SIGINT)
        return 128 + signum, f"lvsearch {args.command}: interrupted ({signal.Signals(signum).name})"
    except Exception as error:
        log = _write_traceback()
        started = not isinstance(error, NotStarted)
        return (1 if started else NOTHING_STARTED,
                f"lvsearch {args.command}: error: {error if not started else f'{type(error).__name__}: {error}'} "
                f"(traceback in {log}){'' if started else '; nothing was started'}")


def _end(command: str, line: str | None) -> None:
    """Say how the command ended, then stop the Ray it started or joined: explicitly it takes
    ~1.5 s, where leaving it to Ray's exit hooks takes ~5 s. A background start still under way
    (a command that failed before it needed Ray) is waited for, then stopped: left to the
    process's end, Ray's agents outlived it by a minute. So from the command's end on, a first
    Ctrl-C or SIGTERM is only said (one arriving while the closing line was printed raised a
    traceback); a second one leaves at once. The exit code stays the command's."""
    signals: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) > 1:
            raise Interrupted(signum)
        print(f"lvsearch {command}: interrupted ({signal.Signals(signum).name}): stopping Ray first "
              f"(again to leave at once)", file=sys.stderr, flush=True)

    held = {signum: signal.signal(signum, hold) for signum in HANDLED}
    try:
        if line is not None:  # in one write: a signal's line cannot come between it and its newline
            sys.stderr.write(f"{line}\n")
            sys.stderr.flush()
        localray.wait_for_background(raise_error=False)
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    except Interrupted:
        print(f"lvsearch {command}: left without stopping Ray: its last processes end within about a minute",
              file=sys.stderr)
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)


def _write_traceback() -> Path:
    """An unexpected error's traceback goes to a file; the console gets one line."""
    path = Path(tempfile.gettempdir()) / f"lvsearch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(traceback.format_exc())
    return path


def entry() -> None:
    """The console script: :func:`main`, then out without tearing the interpreter down. Once the
    command has ended (Ray stopped, logs closed, exit handlers run), unloading torch, Ray and
    MLflow module by module only costs time: 3-4 s on 2 cores, after every command."""
    code = main(ray_at_launch=True)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
