"""Suite-wide settings: one intra-op thread (tiny models on a shared 2-core machine run several
times faster without OpenMP spinning against other processes), the same for child processes,
and a private dataset cache."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["DIFFSTUDIO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))  # error logs of unexpected failures
    yield


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache of the test's own (``tmp_path / "cache"``) instead of the suite's shared one; a file
    asks for it on every test with ``pytestmark = pytest.mark.usefixtures("own_cache")``."""
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "cache"))
