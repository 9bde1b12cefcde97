"""``lvsearch demo`` (what ``make demo`` runs): synthetic data, every demo space, best configs.

Everything runs on this machine: a synthetic EchoNet-Dynamic folder, local Ray, MLflow in a SQLite
file. Models are tiny or randomly initialised: the demo shows the machinery, not results.
"""

from __future__ import annotations

import time
from pathlib import Path

from lvseg.synth import write_synthetic
from search import tracking
from search.driver import Driver
from search.export import export_best
from search.runner import run_search
from search.space import load_space
from search.state import default_storage

DEMO_SPACES = Path(__file__).resolve().parent.parent / "spaces" / "demo"
DEMO_VIDEOS = 50
BANNER = ("DEMO: synthetic data (lvseg synth) and tiny/random models - the numbers below exercise the "
          "machinery and are not results.")


def run_demo(out: Path, tracking_uri: str | None = None, storage: Path | None = None,
             driver: Driver | None = None) -> int:
    """Returns the exit code: that of the first demo search that did not run to its end, else 0."""
    out = out.resolve()
    data = out / "synthetic-echonet"
    if not (data / "FileList.csv").is_file():
        started = time.perf_counter()
        write_synthetic(data, videos=DEMO_VIDEOS, seed=0)
        print(f"wrote {DEMO_VIDEOS} synthetic videos to {data} ({time.perf_counter() - started:.1f} s)")
    uri = tracking_uri or tracking.default_tracking_uri()
    storage = storage or default_storage()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(BANNER)
    rows = []
    for space_file in sorted(DEMO_SPACES.glob("*.yaml")):
        space = load_space(space_file)
        name = f"demo-{space_file.stem}-{stamp}"
        summary = run_search(space, str(data), name, tracking_uri=uri, storage=storage, cache_dir=out / "cache",
                             driver=driver)
        if summary["exit_code"] != 0:
            print(f"demo: search {name} did not run to its end ({summary['status']}); stopping the demo")
            return summary["exit_code"]
        exported = export_best(uri, name, out / f"best-{space_file.stem}.yaml")
        rows.append({"search": name, "recipe": space.recipe, "best": exported["best"], "tied": exported["tied"],
                     "config": exported["paths"][0], "counts": summary["counts"], "report": summary.get("report")})
    print(_final_table(rows, uri, out))
    return 0


def _final_table(rows: list[dict], uri: str, out: Path) -> str:
    lines = ["", BANNER, f"{'recipe':<13} {'best val_dice':>13} {'95% interval':<13} {'tied':>4}  best config"]
    for row in rows:
        best = row["best"]
        interval = f"{best['low']:.3f}-{best['high']:.3f}" if best["low"] is not None else ""
        lines.append(f"{row['recipe']:<13} {best['score']:>13.4f} {interval:<13} {row['tied']:>4}  {row['config']}")
    ui = "lvsearch ui" + ("" if uri == tracking.default_tracking_uri() else f" --tracking-uri {uri}")
    lines += ["", "Browse every trial (params, per-epoch metrics, overlays):",
              f"  .venv/bin/{ui}        # prints the address of the runs table on 127.0.0.1:5000",
              "Retrain a best config and evaluate it on the test split:",
              f"  .venv/bin/lvseg train {rows[0]['config']} --out {out / 'retrained'}" if rows else ""]
    return "\n".join(lines)
