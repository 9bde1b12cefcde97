"""A local Ray for the search tests: started once, on loopback, in the tests' own temp folder."""

from __future__ import annotations

import subprocess

import pytest


def listening_sockets() -> set[str]:
    """Local addresses of listening TCP sockets with their process (``ss -ltnpH``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[3:]) for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    """Start Ray the way `lvsearch` does locally; yields the listening sockets Ray opened."""
    import ray

    from search.prepare import init_ray

    if ray.is_initialized():
        ray.shutdown()
    before = listening_sockets()
    init_ray(None, temp_dir=str(tmp_path_factory.mktemp("ray")))
    opened = listening_sockets() - before
    yield opened
    ray.shutdown()
