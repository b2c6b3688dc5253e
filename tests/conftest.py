"""Shared test fixtures: where the real data lives, and a private cache for derived arrays."""
import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data from the repo root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real datasets; skipped locally when absent, required in CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data folder {SHARED_DATA} is missing, and CI requires it")
        pytest.skip(f"real data folder {SHARED_DATA} is missing (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """One cache folder for the whole session, so a dataset is decoded at most once."""
    path = tmp_path_factory.mktemp("imbalance-cache")
    yield path
    shutil.rmtree(path, ignore_errors=True)  # ~185 MB of decoded CIFAR-10: not worth keeping


@pytest.fixture(autouse=True)
def _private_data_cache(data_cache, monkeypatch):
    """Keep every test's derived arrays out of ~/.cache."""
    monkeypatch.setenv("IMBALANCE_CACHE", str(data_cache))
