"""Shared fixtures. Tests never touch a model hub."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); third-party data tests skipped")
    return SHARED


@pytest.fixture
def store(tmp_path):
    from memstore.store import Store

    return Store.init(tmp_path / "db")


@pytest.fixture
def library(store):
    return store.library("default")


@pytest.fixture
def photos():
    """Real photos that ship in installed packages."""
    from skimage import data

    return {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
    }


@pytest.fixture
def insightface_images() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "images"


def solid(color, size=(64, 48)) -> np.ndarray:
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = color
    return arr


def long_tests() -> bool:
    """``CONTINUITY_LONG_TESTS=1`` runs the stress tests at full size (more operations per writer,
    more kill trials, the 4 x 100 S3 run); the default run keeps them to what `make test` can afford."""
    return os.environ.get("CONTINUITY_LONG_TESTS") == "1"
