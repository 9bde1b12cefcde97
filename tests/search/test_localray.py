"""The local Ray that ``lvsearch run`` starts in the background at launch (search.localray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# In a fresh interpreter: the suite's own process may hold a Ray already, and then nothing starts.
START = """
import ray
from search import localray
localray.start_in_background(verbose=False)
try:
    localray.wait_for_background()
except OSError as error:
    print(type(error).__name__, ray.is_initialized(), error, sep="|")
"""


def test_a_local_ray_that_cannot_start_says_so_naming_the_folder(tmp_path: Path) -> None:
    """Ray's own error ("Not a directory: ...") does not say that Ray's start failed; the
    command's one error line must, and the error must reach whoever waits for that start."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_TMPDIR": str(blocker / "ray")})
    seen = done.stdout.strip().split("|")
    assert len(seen) == 3, f"no OSError reached the waiter: {done.stdout}{done.stderr[-2000:]}"
    kind, up, message = seen
    assert (kind, up) == ("RayStartError", "False"), done.stdout + done.stderr[-2000:]
    assert message.startswith("could not start a local Ray: ") and str(blocker) in message, message
