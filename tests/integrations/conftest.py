"""Fixtures of the ComfyUI pack's tests: the pack loaded as ComfyUI loads it, and a studio store
with two real photos registered through the pack's own nodes."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .comfy import CORE_NODES, call, load_pack


@pytest.fixture(scope="session")
def pack() -> ModuleType:
    return load_pack()


@pytest.fixture(scope="session")
def nodes(pack: ModuleType) -> dict[str, type]:
    """Every class a workflow may name: the pack's and the core stand-ins."""
    return {**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}


def image_tensor(*photos: np.ndarray):
    """Photos (H x W x 3 uint8, one size) as a ComfyUI IMAGE batch."""
    import torch

    return torch.from_numpy(np.stack(photos).astype(np.float32) / 255.0)


@pytest.fixture(scope="module")
def real_photos() -> dict[str, np.ndarray]:
    """Real photos shipped inside installed packages: skimage's astronaut and cat, insightface's group."""
    import importlib.util

    from PIL import Image
    from skimage import data

    photos = {"astronaut.png": data.astronaut(), "chelsea.png": data.chelsea()}
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the face extra (insightface, dlib) is not installed: pip install -e '.[face]'")
    t1 = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    # its left third (two of the six people): face detection on the whole group costs seconds
    photos["t1.jpg"] = np.asarray(Image.open(t1).convert("RGB"))[:, :420].copy()
    return photos


@pytest.fixture(scope="module")
def studio(pack: ModuleType, real_photos, tmp_path_factory):
    """A store whose library indexes faces (dlib), with Aria (the astronaut) and Chelsea (the cat)
    registered through the Register Entity node."""
    from memstore.store import Store

    db = tmp_path_factory.mktemp("studio") / "db"
    Store.init(db).library("default").configure(embedders=[{"type": "color-histogram"}, {"type": "dlib"}])
    nodes = pack.NODE_CLASS_MAPPINGS
    handle, _ = call(nodes["ContinuityOpenLibrary"], db=str(db), library="default")
    call(
        nodes["ContinuityRegisterEntity"],
        library=handle,
        images=image_tensor(real_photos["astronaut.png"]),
        name="Aria",
        kind="character",
        aliases="the astronaut",
        description="a woman in an orange space suit",
        consent="yes",
    )
    call(
        nodes["ContinuityRegisterEntity"],
        library=handle,
        images=image_tensor(real_photos["chelsea.png"]),
        name="Chelsea",
        kind="character",
        description="a ginger tabby cat",
    )
    yield handle
    from importlib import import_module

    import_module(pack.__name__ + ".handles").forget_handles()
