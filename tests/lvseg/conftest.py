"""Fixtures of lvseg's tests: which CPU kernels run."""

from __future__ import annotations

import os

import pytest

from lvseg import native


def native_or_skip() -> None:
    """CI installs a C compiler (.ci/run), so there the native kernels must build; elsewhere their
    tests skip, loudly, where they cannot."""
    if native.library() is None:
        if os.environ.get("CI"):
            pytest.fail("the native CPU kernels did not build (see the warning above); CI installs gcc")
        pytest.skip("NO NATIVE CPU KERNELS HERE (no C compiler or not x86-64): their tests did not run")


@pytest.fixture(params=["native", "torch"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test that takes this runs twice: on the native kernels (lvseg.nativeops) and on
    PyTorch's, which run where the kernels cannot be built (``native.library()`` None)."""
    if request.param == "native":
        native_or_skip()
    else:
        monkeypatch.setattr(native, "library", lambda: None)
    return request.param
