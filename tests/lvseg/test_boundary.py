"""lvseg knows images, masks, models and metrics, and nothing of Ray or MLflow."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lvseg


def test_no_lvseg_module_imports_ray_or_mlflow() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(lvseg.__path__, "lvseg."))
    probe = ("import importlib, sys\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow', 'optuna'))\n"
             "print(leaked)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    assert len(modules) > 20  # the walk really found the package
