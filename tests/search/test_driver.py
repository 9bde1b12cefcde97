from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A fresh interpreter, as `lvsearch run` imports: the driver routes the libraries' logs first, and
# MLflow is imported only once the space is checked; then a new tracking store is created.
NEW_STORE = """
import sys
from pathlib import Path
from search.driver import Driver
driver = Driver.for_command("normal")
assert "mlflow" not in sys.modules
from search import tracking
tracking.open_store(f"sqlite:///{sys.argv[1]}/mlruns.db", create=True)
driver.logs.to_file(Path(sys.argv[1]) / "lvsearch.log", None)
driver.logs.close()
"""


def test_mlflow_s_log_lines_go_to_the_log_file_not_the_console(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NEW_STORE, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr[-3000:]
    assert "mlflow.store.db.utils: Creating initial MLflow database tables" in (tmp_path / "lvsearch.log").read_text()
