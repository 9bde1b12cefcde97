"""End to end on local Ray: a real search with tiny models and synthetic data, tracked in MLflow,
exported and retrained."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from lvseg.cli import main as lvseg_main
from lvseg.config import config_keys
from search import tracking
from search.cli import main as lvsearch_main
from search.runner import run_search
from search.space import parse_space

EPOCHS = 3
SPACE = {
    "recipe": "dinov2_probe", "metric": "val_dice", "mode": "max",
    "fixed": {"backbone": "tiny", "image_size": 112, "epochs": EPOCHS, "loss_reduction": "mean"},
    "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 3e-2},
               "optimizer": {"type": "choice", "values": ["sgd", "adamw"]},
               "momentum": {"type": "uniform", "low": 0.5, "high": 0.95, "when": {"optimizer": "sgd"}},
               "head": {"type": "choice", "values": ["linear", "conv"]},
               "loss": {"type": "choice", "values": ["bce", "dice"]}},
    "search": {"sampler": "tpe", "scheduler": "asha", "samples": 6, "concurrency": 2, "grace_period": 1,
               "reduction_factor": 2, "seed": 0},
    "resources": {"cpu": 1, "gpu": 0},
}


@pytest.fixture(scope="module")
def search(ray_local, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("search")
    uri = f"sqlite:///{work / 'mlruns.db'}"
    space = parse_space(SPACE, str(work / "tiny_probe.yaml"), yaml.safe_dump(SPACE))
    summary = run_search(space, str(synthetic_root), "e2e", tracking_uri=uri, storage=work / "runs",
                         cache_dir=work / "cache")
    return {"summary": summary, "uri": uri, "work": work, "cache": work / "cache", "root": synthetic_root}


def test_local_ray_listens_on_loopback_only(ray_local: set[str]) -> None:
    assert ray_local, "Ray opened no listening socket: this check would prove nothing"
    loopback = ("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")  # the last: IPv4 loopback on a v6 socket
    assert all(addr.startswith(loopback) for addr in ray_local), sorted(ray_local)


def test_six_trials_ran_and_the_scheduler_pruned_some(search: dict) -> None:
    counts = search["summary"]["counts"]
    assert sum(counts.values()) == 6 and counts.get("pruned", 0) >= 1 and counts.get("completed", 0) >= 1


def test_optuna_saw_pruned_trials_as_pruned(search: dict) -> None:
    counts, optuna = search["summary"]["counts"], search["summary"]["optuna"]
    assert optuna.get("PRUNED", 0) == counts.get("pruned", 0)
    assert optuna.get("COMPLETE", 0) == counts.get("completed", 0)


def test_mlflow_has_one_parent_and_exactly_one_child_per_trial(search: dict) -> None:
    mlflow = tracking.client(search["uri"])
    parent = tracking.find_search_run(mlflow, search["uri"], "e2e")
    assert parent.data.tags["recipe"] == "dinov2_probe" and parent.data.tags["data_hash"]
    assert parent.info.status == "FINISHED"
    children = tracking.trial_runs(mlflow, search["uri"], parent.info.run_id)
    assert len(children) == 6
    assert len({c.data.tags[tracking.TRIAL_TAG] for c in children}) == 6
    for child in children:
        assert set(child.data.params) == config_keys("dinov2_probe")  # the fully resolved config
        history = mlflow.get_metric_history(child.info.run_id, "val_dice")
        status = child.data.tags[tracking.STATUS_TAG]
        reached = EPOCHS if status == "completed" else int(status.rsplit(" ", 1)[-1])
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, reached + 1))
        assert child.info.status == ("FINISHED" if status == "completed" else "KILLED")


def test_completed_trials_carry_their_config_and_an_overlay(search: dict) -> None:
    mlflow = tracking.client(search["uri"])
    parent = tracking.find_search_run(mlflow, search["uri"], "e2e")
    done = [c for c in tracking.trial_runs(mlflow, search["uri"], parent.info.run_id)
            if c.data.tags[tracking.STATUS_TAG] == "completed"]
    for child in done:
        assert {a.path for a in mlflow.list_artifacts(child.info.run_id)} >= {"config.yaml", "overlay.png"}
    assert {a.path for a in mlflow.list_artifacts(parent.info.run_id, "space")} == {"space/tiny_probe.yaml"}


def test_export_then_lvseg_train_reproduces_the_trial_dice(search: dict, capsys) -> None:
    work, uri = search["work"], search["uri"]
    best = work / "best.yaml"
    assert lvsearch_main(["export", "e2e", "--out", str(best), "--tracking-uri", uri]) == 0
    assert best.read_text().startswith("# NOT A RESULT: SYNTHETIC data")  # tiny random models on cartoons
    assert "not a result: SYNTHETIC data" in capsys.readouterr().out
    config = yaml.safe_load(best.read_text())
    assert config["recipe"] == "dinov2_probe" and config["data"] == str(search["root"].resolve())
    out = work / "retrained"
    assert lvseg_main(["train", str(best), "--out", str(out), "--cache-dir", str(search["cache"])]) == 0
    retrained = json.loads((out / "metrics.json").read_text())
    trial = search["summary"]["rows"][0]
    assert trial["status"].kind == "completed"
    assert retrained["val_dice"] == pytest.approx(trial["score"], abs=1e-6)


def test_export_top_k_and_list(search: dict, capsys) -> None:
    uri = search["uri"]
    folder = search["work"] / "top"
    assert lvsearch_main(["export", "e2e", "--top", "2", "--out", str(folder), "--tracking-uri", uri]) == 0
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == min(2, search["summary"]["counts"]["completed"]) and files[0].startswith("01-")
    assert lvsearch_main(["list", "--tracking-uri", uri]) == 0
    listed = capsys.readouterr().out
    assert "e2e" in listed and f"{search['summary']['rows'][0]['score']:.4f}*" in listed
    assert "* not a result:\n  e2e: SYNTHETIC data" in listed


def test_list_and_export_of_a_real_search_load_neither_torch_nor_ray(search: dict) -> None:
    """With searches to rank and a config to download, not only on a missing store (test_cli)."""
    out = search["work"] / "light.yaml"
    probe = ("import sys; from search.cli import main; "
             f"codes = [main(['list', '--tracking-uri', {search['uri']!r}]), "
             f"main(['export', 'e2e', '--out', {str(out)!r}, '--tracking-uri', {search['uri']!r}])]; "
             "print(codes, sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[-2] == "[0, 0] []", done.stdout + done.stderr
    assert out.is_file()


def test_unknown_search_is_a_clear_error(search: dict, capsys) -> None:
    assert lvsearch_main(["export", "nope", "--out", "x.yaml", "--tracking-uri", search["uri"]]) == 2
    assert "no search named 'nope'" in capsys.readouterr().err


def test_the_demo_sam_space_logs_a_child_run_per_strategy(ray_local, synthetic_root: Path, tmp_path: Path) -> None:
    from search.space import load_space

    space = load_space(Path(__file__).parents[2] / "spaces" / "demo" / "sam_prompts.yaml")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    summary = run_search(space, str(synthetic_root), "sam", tracking_uri=uri, storage=tmp_path / "runs",
                         cache_dir=tmp_path / "cache")
    grid = {(s, c) for s in space.grid()["strategy"] for c in space.grid()["mask_choice"]}
    assert summary["counts"] == {"completed": len(grid)}
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, "sam")
    children = tracking.trial_runs(mlflow, uri, parent.info.run_id)
    assert {(c.data.params["strategy"], c.data.params["mask_choice"]) for c in children} == grid
    for child in children[:3]:
        assert {a.path for a in mlflow.list_artifacts(child.info.run_id)} >= {"config.yaml", "overlay.png",
                                                                            "dice_histogram.png"}
        assert "whole_heart_fraction" in child.data.metrics


def test_an_error_in_the_driver_ends_every_run_and_exits_1(ray_local, synthetic_root: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    from search.console import Console

    def broken(self, iteration, trials, trial, result, **info):
        raise RuntimeError("the driver broke")  # a real exception inside Tuner.fit, on the driver

    monkeypatch.setattr(Console, "on_trial_result", broken)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = parse_space({**SPACE, "search": {**SPACE["search"], "scheduler": "fifo"}}, "s.yaml")
    summary = run_search(space, str(synthetic_root), "broken", tracking_uri=uri, storage=tmp_path / "runs",
                         cache_dir=tmp_path / "cache")
    assert summary["exit_code"] == 1 and summary["status"].kind == "failed"
    assert "RuntimeError: the driver broke" in summary["status"].reason
    log = tmp_path / "runs" / "broken" / "lvsearch.log"
    assert str(log) in summary["status"].reason and "Traceback" in log.read_text()
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, "broken")
    assert parent.info.status == "FAILED"
    assert all(c.info.status != "RUNNING" for c in tracking.trial_runs(mlflow, uri, parent.info.run_id))


def test_the_demo_fails_when_a_demo_search_fails(ray_local, tmp_path: Path, monkeypatch, capsys) -> None:
    from search import demo

    spaces = tmp_path / "spaces"
    spaces.mkdir()
    failing = {**SPACE, "recipe": "baseline", "params": {"lr": SPACE["params"]["lr"]},
               "fixed": {"model": "tiny", "epochs": 1, "backbone_weights": str(tmp_path / "missing.pt")},
               "search": {"sampler": "random", "scheduler": "fifo", "samples": 1, "concurrency": 1}}
    (spaces / "baseline.yaml").write_text(yaml.safe_dump(failing))
    monkeypatch.setattr(demo, "DEMO_SPACES", spaces)
    monkeypatch.setattr(demo, "DEMO_VIDEOS", 8)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert demo.run_demo(tmp_path / "out", uri, tmp_path / "runs") == 1
    assert "did not run to its end (failed: 1 of 1 trials failed" in capsys.readouterr().out


def test_the_sam_decoder_demo_space_searches_exports_and_retrains_to_the_same_dice(
        ray_local, synthetic_root: Path, tmp_path: Path) -> None:
    from search.space import load_space

    space = load_space(Path(__file__).parents[2] / "spaces" / "demo" / "sam_decoder.yaml")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    summary = run_search(space, str(synthetic_root), "decoder", samples=2, tracking_uri=uri,
                         storage=tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert summary["exit_code"] == 0
    best = next(row for row in summary["rows"] if row["status"].kind == "completed")
    assert lvsearch_main(["export", "decoder", "--out", str(tmp_path / "best.yaml"), "--tracking-uri", uri]) == 0
    assert lvseg_main(["train", str(tmp_path / "best.yaml"), "--out", str(tmp_path / "retrained"), "--cache-dir",
                       str(tmp_path / "cache")]) == 0
    retrained = json.loads((tmp_path / "retrained" / "metrics.json").read_text())
    assert retrained["val_dice"] == pytest.approx(best["score"], abs=1e-6)



def test_every_search_ends_with_a_report_that_a_browser_shows_whole(search: dict, chromium, not_blank,
                                                                   tmp_path: Path) -> None:
    page = search["summary"]["report"]
    assert page.name == "report.html" and {p.name for p in page.parent.glob("*.png")} >= {
        "best_so_far.png", "slices.png", "parallel.png", "curves.png", "per_video.png"}
    mlflow = tracking.client(search["uri"])
    parent = tracking.find_search_run(mlflow, search["uri"], "e2e")
    assert "report/report.html" in {a.path for a in mlflow.list_artifacts(parent.info.run_id, "report")}
    dom = chromium(page.as_uri(), dump=True)
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 5, loaded
    assert "SYNTHETIC data" in dom and "RANDOMLY initialised backbone" in dom
    assert "not estimated, PED-ANOVA needs at least 10 trials with a score and this search has" in dom
    shot = tmp_path / "report.png"
    chromium(page.as_uri(), png=shot)
    assert not_blank(shot)


def test_the_report_command_writes_where_asked(search: dict, tmp_path: Path, capsys) -> None:
    assert lvsearch_main(["report", "e2e", "--out", str(tmp_path / "r"), "--tracking-uri", search["uri"]]) == 0
    assert (tmp_path / "r" / "report.html").is_file()
    assert f"wrote {tmp_path / 'r' / 'report.html'}" in capsys.readouterr().out


def test_a_search_today_s_recipe_would_refuse_still_gets_its_report(search: dict, tmp_path: Path, capsys) -> None:
    """A search run before its recipe dropped a choice: its stored space (rewritten here as such
    a search stored it) no longer passes today's checks, and the report still shows it."""
    from urllib.parse import unquote, urlparse

    mlflow = tracking.client(search["uri"])
    parent = tracking.find_search_run(mlflow, search["uri"], "e2e")
    (artifact,) = mlflow.list_artifacts(parent.info.run_id, "space")
    stored = Path(unquote(urlparse(parent.info.artifact_uri).path)) / artifact.path
    text = stored.read_text()
    old = yaml.safe_load(text)
    old["params"]["head"]["values"].append("mlp")  # a head this version no longer has
    try:
        stored.write_text(yaml.safe_dump(old))
        assert lvsearch_main(["report", "e2e", "--out", str(tmp_path / "r"), "--tracking-uri", search["uri"]]) == 0
    finally:
        stored.write_text(text)
    printed = capsys.readouterr()
    assert "note: today's dinov2_probe recipe would refuse this search's space" in printed.err
    assert "params.head: value 'mlp'" in printed.err and "the report shows the search as it ran" in printed.err
    page = (tmp_path / "r" / "report.html").read_text()
    assert "e2e" in page and {p.name for p in (tmp_path / "r").glob("*.png")} >= {"slices.png", "curves.png"}


def test_the_study_persists_with_every_trials_end_and_the_dashboard_serves_it(search: dict, free_port) -> None:
    import optuna

    storage = f"sqlite:///{search['work'] / 'optuna.db'}"  # beside the MLflow database
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert study.user_attrs["recipe"] == "dinov2_probe"
    states = sorted(t.state.name for t in study.trials)
    counts = search["summary"]["counts"]
    assert states == sorted(["COMPLETE"] * counts["completed"] + ["PRUNED"] * counts.get("pruned", 0))
    assert all(t.intermediate_values for t in study.trials if t.state.name == "PRUNED")  # its last value kept
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), storage, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/api/studies")
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    finally:
        server.terminate()
        server.wait(30)
    assert "e2e" in {s["study_name"] for s in json.loads(body)["study_summaries"]}
    assert {line.split()[3] for line in listening.splitlines() if line.strip()} == {f"127.0.0.1:{port}"}


def _get_when_up(url: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_mlflow_ui_serves_on_loopback_and_shows_a_search_as_people_read_it(search: dict, chromium, not_blank,
                                                                                tmp_path: Path, free_port,
                                                                                lines_until) -> None:
    port = free_port()
    ui = subprocess.Popen([str(Path(sys.executable).parent / "lvsearch"), "ui", "--port", str(port), "--tracking-uri",
                           search["uri"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = lines_until(ui, "the UI answers")
        trials_url = next(line for line in printed if "e2e's trials" in line).split(": ", 1)[1]
        base = f"http://127.0.0.1:{port}"
        urllib.request.urlopen(base, timeout=10).read()  # said to answer: it does, at once
        mlflow = tracking.client(search["uri"])
        parent = tracking.find_search_run(mlflow, search["uri"], "e2e")
        children = tracking.trial_runs(mlflow, search["uri"], parent.info.run_id)
        best = max(children, key=lambda run: run.data.metrics.get("best_val_dice", -1))
        table = chromium(trials_url, dump=True, size=(2400, 900), wait_ms=15000)
        chromium(trials_url, png=tmp_path / "runs.png", size=(2400, 900), wait_ms=15000)
        pages = {run.info.run_name: f"{base}/#/experiments/{parent.info.experiment_id}/runs/{run.info.run_id}"
                 for run in (parent, best)}
        parent_page = chromium(pages["e2e"], dump=True, wait_ms=15000)
        chromium(pages[best.info.run_name], png=tmp_path / "trial.png", size=(1600, 1200), wait_ms=15000)
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        ui.send_signal(signal.SIGINT)  # Ctrl-C: the server stops, in one line
        after, _ = ui.communicate(timeout=60)
    finally:
        if ui.poll() is None:  # a failure above: SIGTERM, on which lvsearch ui stops its server too
            ui.terminate()
            ui.wait(60)
    assert {line.split()[3] for line in listening.splitlines() if line.strip()} == {f"127.0.0.1:{port}"}
    assert ui.returncode == 0 and after.strip().splitlines()[-1] == "lvsearch ui: stopped", after
    assert "Traceback" not in after and "INFO" not in "\n".join(printed) + after  # no uvicorn logs either
    assert not subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.strip()
    assert printed[0].startswith(f"MLflow UI for {search['uri']}: http://127.0.0.1:{port}/#/experiments/")
    columns = set(re.findall(r'col-id="([^"]+)"', table))
    wanted = {"tags.`lvsearch.status`", "metrics.`best_val_dice`", "metrics.`best_val_dice_ci_low`",
              "metrics.`best_val_dice_ci_high`"} | {f"params.`{name}`" for name in SPACE["params"]}
    assert wanted <= columns, wanted - columns
    shown = [name for name in re.findall(r">(e2e-t\d{3}[^<]*)<", table)]
    ranked = sorted(children, key=lambda run: -run.data.metrics.get("best_val_dice", -1))
    assert list(dict.fromkeys(shown)) == [run.info.run_name for run in ranked]  # every trial, best first
    description = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", parent_page))
    assert "Caveats: SYNTHETIC data" in description and f"Best: {best.info.run_name}, val_dice " in description
    assert not_blank(tmp_path / "runs.png") and not_blank(tmp_path / "trial.png")

