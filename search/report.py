"""``lvsearch report NAME``: one self-contained HTML page (pictures embedded) and its PNGs, from what
the tracking store holds of a search: how the best score improved, which parameters mattered, the
score against each parameter, the best trials side by side, every learning curve, per-video Dice by
each choice, the recipe's own figures per choice, the Pareto front of a several-metric search, and
the table of the best trials with their intervals and ties. Also written at the end of every search
and logged to its parent run (``report/``).
"""

from __future__ import annotations

import base64
import html
import math
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from lvseg.metrics import counts_from_table, paired_dice_difference
from lvseg.recipes import get_recipe
from lvseg.recipes.base import PER_VIDEO
from search import charts, tracking
from search.export import ranked_trials
from search.space import Param, SearchSpace, stored_space
from search.tags import CAVEATS_TAG

TOP_TABLE, TOP_PAIRED, PER_VIDEO_TRIALS = 20, 10, 200
# PED-ANOVA contrasts the top 10% of trials with the rest: below ten trials that top is one trial
# and the importances are noise (Optuna's docs ask for five trials above the quantile)
IMPORTANCE_TRIALS = 10
NUMBER = re.compile(r"-t(\d+)(?: |$)")


def write_report(uri: str, name: str, out: Path) -> Path:
    """Write ``out/report.html`` and the PNGs beside it; returns the HTML page's path."""
    mlflow = tracking.open_store(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    space = _space(mlflow, parent)
    objectives = list(zip(space.metric, space.mode, strict=True))
    rows = ranked_trials(uri, parent.info.run_id, list(space.metric), list(space.mode), [p.name for p in space.params])
    trials = [_trial(row, space.params, parent.info.start_time) for row in rows]
    caveats = parent.data.tags.get(CAVEATS_TAG, "")
    out.mkdir(parents=True, exist_ok=True)
    tables = _per_video(mlflow, rows, out)
    pictures = _pictures(mlflow, space, objectives, trials, tables, caveats, out)
    page = out / "report.html"
    page.write_text(_html(name, parent, space, rows, tables, pictures, caveats, _omitted(space, trials)))
    return page


def _space(mlflow: Any, parent: Any) -> SearchSpace:
    (artifact,) = mlflow.list_artifacts(parent.info.run_id, "space")
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(mlflow.download_artifacts(parent.info.run_id, artifact.path, tmp)).read_text()
    space, refused = stored_space(text, artifact.path)
    if refused:
        print(f"note: today's {space.recipe} recipe would refuse this search's space ({refused}); "
              f"the report shows the search as it ran", file=sys.stderr)
    return space


def _typed(param: Param, value: str | None) -> Any:
    """An MLflow param (a string) back to the space's type."""
    if value is None or value == "None":
        return None
    if param.type == "choice":
        return next((v for v in param.values if str(v) == value), value)
    return int(float(value)) if param.type in ("int", "logint") else float(value)


def _trial(row: dict[str, Any], params: tuple[Param, ...], started: int) -> dict[str, Any]:
    match = NUMBER.search(row["name"])
    return {**row, "number": int(match.group(1)) if match else 0, "params": _searched(row["params"], params),
            "ended": ((row["end"] or row["start"] or started) - started) / 60_000}


def _searched(logged: dict[str, str | None], params: tuple[Param, ...]) -> dict[str, Any]:
    """The values the search drew for a trial: a trial logs its whole config, so a conditional
    param whose condition did not hold (momentum under adam) shows the recipe's default there,
    which no picture may take for a drawn value; it is None here. ``params`` come ordered so that
    each follows those its condition names."""
    drawn: dict[str, Any] = {}
    for param in params:
        drawn[param.name] = _typed(param, logged.get(param.name)) if param.active(drawn) else None
    return drawn


def _per_video(mlflow: Any, rows: list[dict[str, Any]], out: Path) -> dict[str, pd.DataFrame]:
    """Per-video tables of the completed trials (best first, at most PER_VIDEO_TRIALS)."""
    tables = {}
    folder = out / "per_video"
    for row in [r for r in rows if r["status"].kind == "completed"][:PER_VIDEO_TRIALS]:
        try:
            path = mlflow.download_artifacts(row["run_id"], PER_VIDEO, str(folder / row["run_id"]))
        except Exception:  # a trial from before per-video tables were logged: left out of these figures
            continue
        tables[row["run_id"]] = pd.read_csv(path, dtype={"video": str})
    return tables


def _pictures(mlflow: Any, space: SearchSpace, objectives: list[tuple[str, str]], trials: list[dict],
              tables: dict[str, pd.DataFrame], caveats: str, out: Path) -> list[tuple[str, Path]]:
    (metric, mode), params = objectives[0], space.params
    pictures = [("How the best score improved", charts.best_so_far(trials, metric, mode, out / "best_so_far.png",
                                                                   caveats))]
    weights, method = _importance(space, trials)
    if weights:
        pictures.append(("Which parameters mattered", charts.importance(weights, out / "importance.png", caveats,
                                                                        method)))
    if params:
        pictures.append((f"{metric} against each parameter", charts.slices(trials, params, metric,
                                                                           out / "slices.png", caveats)))
        pictures.append(("The best trials side by side", charts.parallel(trials, params, metric, mode,
                                                                          out / "parallel.png", caveats)))
    histories = {t["name"]: [(m.step, m.value) for m in mlflow.get_metric_history(t["run_id"], metric)]
                 for t in trials}
    pictures.append(("Every trial's learning curve", charts.curves(histories, {t["name"]: t["status"].kind
                                                                               for t in trials}, metric,
                                                                   out / "curves.png", caveats)))
    pictures += _by_choice(space, trials, tables, caveats, out)
    if len(objectives) > 1:
        pictures.append(("Pareto front", charts.pareto(trials, objectives, out / "pareto.png", caveats)))
    return pictures


def _scored(trials: list[dict]) -> int:
    return sum(t["score"] is not None for t in trials)


def _omitted(space: SearchSpace, trials: list[dict]) -> str:
    """Why the report has no importance picture, when that is for too few trials."""
    if not space.params or _scored(trials) >= IMPORTANCE_TRIALS:
        return ""
    return (f"Which parameters mattered: not estimated, PED-ANOVA needs at least {IMPORTANCE_TRIALS} trials "
            f"with a score and this search has {_scored(trials)}.")


def _importance(space: SearchSpace, trials: list[dict]) -> tuple[dict[str, float], str]:
    """PED-ANOVA importances over the trials with a score (needs no extra package), or none."""
    if _scored(trials) < IMPORTANCE_TRIALS:
        return {}, ""
    optuna = _optuna_without_sklearn()
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def distribution(p: Param):
        if p.type == "choice":
            return CategoricalDistribution(list(p.values))
        if p.type in ("int", "logint"):
            return IntDistribution(int(p.low), int(p.high), log=p.type == "logint")
        return FloatDistribution(p.low, p.high, log=p.type == "loguniform")

    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory": not for the console
    try:
        study = optuna.create_study(direction="maximize" if space.mode[0] == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(quiet)
    for t in trials:
        present = {p.name: p for p in space.params if t["params"].get(p.name) is not None}
        if t["score"] is not None and present:
            study.add_trial(optuna.trial.create_trial(
                params={n: t["params"][n] for n in present}, value=t["score"],
                distributions={n: distribution(p) for n, p in present.items()}))
    try:
        return dict(optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())), "PED-ANOVA"
    except Exception:  # too few completed trials, or no parameter all of them share
        return {}, ""


def _optuna_without_sklearn() -> Any:
    """Optuna with its ``importance`` package, imported without scikit-learn: the package imports
    it (2.2 s on 2 cores, at the end of every search) for its fANOVA evaluator alone, through
    Optuna's optional-import guard, which records a blocked name as absent. PED-ANOVA needs none
    of it, and scikit-learn stays importable for anything else."""
    import optuna

    if "optuna.importance" not in sys.modules and "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
        try:
            import optuna.importance
        finally:
            del sys.modules["sklearn"]
    return optuna


def _by_choice(space: SearchSpace, trials: list[dict], tables: dict[str, pd.DataFrame], caveats: str,
               out: Path) -> list[tuple[str, Path]]:
    """Per-video Dice by the first choice parameter (crossed with the second when small), and the
    recipe's own figures (e.g. SAM's whole-heart fraction) by the first choice."""
    choices = [p for p in space.params if p.type == "choice"]
    if not choices or not tables:
        return []
    keys = [choices[0].name] + ([choices[1].name] if len(choices) > 1 and len(choices[1].values) <= 6 else [])
    label = " × ".join(keys)
    groups: dict[str, list[float]] = {}
    for t in trials:
        if t["run_id"] in tables:
            group = " × ".join(str(t["params"].get(k)) for k in keys)
            groups.setdefault(group, []).extend(tables[t["run_id"]]["dice_mean"].dropna().tolist())
    pictures = [(f"Dice over videos by {label}", charts.per_video_boxes(dict(sorted(groups.items())), label,
                                                                         out / "per_video.png", caveats))]
    for figure in get_recipe(space.recipe).report_metrics:
        means = _means(trials, choices[0].name, figure)
        if means:
            pictures.append((f"{figure} by {choices[0].name}", charts.per_choice(
                means, figure, choices[0].name, out / f"{figure}.png", caveats)))
    return pictures


def _means(trials: list[dict], key: str, figure: str) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for t in trials:
        value = t.get("metrics", {}).get(figure)
        if isinstance(value, float) and math.isfinite(value):
            values.setdefault(str(t["params"].get(key)), []).append(value)
    return {k: sum(v) / len(v) for k, v in sorted(values.items())}


def _paired(rows: list[dict[str, Any]], tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """The table's last column for each of the best trials: its pooled-Dice difference to the best,
    with a paired bootstrap interval over the same videos (stronger than comparing two intervals),
    or why there is none: a blank cell looked like a missing result."""
    if not rows:
        return {}
    best = rows[0]
    cells = {best["run_id"]: "(the best)"}
    for rank, row in enumerate(rows[1:TOP_TABLE], 2):
        cells[row["run_id"]] = (_difference(row, best, tables) if rank <= TOP_PAIRED
                                else f"n/a: the {TOP_PAIRED} best only")
    return cells


def _difference(row: dict[str, Any], best: dict[str, Any], tables: dict[str, pd.DataFrame]) -> str:
    if best["status"].kind != "completed":  # stopped early: not its final model
        return "n/a: the best did not complete"
    if row["status"].kind != "completed":
        return f"n/a: {row['status'].kind}"
    for trial, who in ((best, "the best"), (row, "this trial")):
        if trial["run_id"] not in tables:
            return f"n/a: {who} has no per-video table"
    ours, reference = tables[row["run_id"]], tables[best["run_id"]]
    if sorted(ours["video"]) != sorted(reference["video"]):
        return "n/a: not the same validation videos"
    ours = ours.set_index("video").loc[reference["video"]].reset_index()  # paired: video by video
    difference, low, high = paired_dice_difference(counts_from_table(ours), counts_from_table(reference),
                                                   samples=2000)
    return f"{difference:+.4f} ({low:+.4f} to {high:+.4f})"


def _html(name: str, parent: Any, space: SearchSpace, rows: list[dict[str, Any]], tables: dict[str, pd.DataFrame],
          pictures: list[tuple[str, Path]], caveats: str, omitted: str) -> str:
    metric = space.metric[0]
    banner = f'<p class="caveat">{html.escape(caveats)}: these numbers are not a result.</p>' if caveats else ""
    sections = "".join(f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" "
                       f"src=\"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}\">"
                       for title, path in pictures)
    sections += f"<p>{html.escape(omitted)}</p>" if omitted else ""
    return PAGE.format(name=html.escape(name), recipe=html.escape(space.recipe), banner=banner,
                       status=html.escape(parent.data.tags.get(tracking.STATUS_TAG, parent.info.status.lower())),
                       counts=html.escape(_counts(rows)), table=_table(rows, metric, _paired(rows, tables)),
                       sections=sections)


def _counts(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"].kind] = counts.get(row["status"].kind, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _table(rows: list[dict[str, Any]], metric: str, paired: dict[str, str]) -> str:
    head = (f"<tr><th>rank</th><th>trial</th><th>status</th><th>{html.escape(metric)}</th><th>95% interval</th>"
            "<th>tied</th><th>difference to the best (paired 95% interval)</th></tr>")
    body = []
    for rank, row in enumerate(rows[:TOP_TABLE], 1):
        score = "" if row["score"] is None else f"{row['score']:.4f}"
        known = row["low"] is not None and row["score"] is not None
        interval = f"{row['low']:.4f} to {row['high']:.4f}" if known else ""
        body.append(f"<tr><td>{rank}</td><td>{html.escape(row['name'])}</td><td>{html.escape(str(row['status']))}"
                    f"</td><td>{score}</td><td>{interval}</td><td>{'tied' if row['tied'] else ''}</td>"
                    f"<td>{paired.get(row['run_id'], '')}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lvsearch report: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
.caveat {{ background: #fff3cd; border: 1px solid #e0c060; padding: 0.5em; font-weight: bold; }}
</style></head>
<body>
<h1>Search {name}</h1>
{banner}
<p>Recipe <b>{recipe}</b>; status <b>{status}</b>; trials: {counts}.</p>
<p>"tied": the trial's 95% interval (over validation videos) overlaps the best's, so these videos cannot
tell the two apart. The paired difference resamples the same videos for both: an interval that holds
0 says the same, more sharply; it compares completed trials only (a pruned trial's model stopped early).</p>
<h2>The best trials</h2>
{table}
{sections}
<script>
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
}});
</script>
</body></html>
"""
