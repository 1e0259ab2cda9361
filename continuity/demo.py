"""`continuity demo`: a sample library from real photos that ship in installed packages, two drawn
locations, and a short story run with the animatic generator and the dlib face embedder.

Characters: scikit-image's ``astronaut()`` (NASA, public domain) as Mara, and the insightface
wheel's aligned sample face ``Tom_Hanks_54745.png`` as Theo; their names are the story's, not the
people's. Locations are painted by :mod:`continuity.drawn`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from memstore.library import Library
from memstore.store import Store

from .drawn import forest_clearing, harbor_at_dusk
from .story import load_story

DEMO_STORY = Path(__file__).parent / "assets" / "demo_story.yaml"


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        from memstore.errors import MissingExtraError

        raise MissingExtraError(f"the demo needs {package!r}; install the extra: pip install 'continuity[face]'")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def sample_images() -> dict[str, list[Any]]:
    """Reference images of the sample cast, all from installed packages or drawn here."""
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    theo = Image.open(_package_file("insightface", "data", "images", "Tom_Hanks_54745.png")).convert("RGB")
    # The sample face is a 112x112 aligned crop: enlarge it so face detectors see a face, and add
    # a mirrored view as a second reference.
    theo = theo.resize((336, 336), Image.LANCZOS)
    return {
        "Mara": [astronaut, astronaut.crop((120, 0, 390, 270)).resize((360, 360), Image.LANCZOS)],
        "Theo": [theo, ImageOps.mirror(theo)],
        "Harbor": [harbor_at_dusk(), harbor_at_dusk(seed=3)],
        "Forest": [forest_clearing(), forest_clearing(seed=5)],
    }


DESCRIPTIONS = {
    "Mara": ("character", "an astronaut home on leave, short brown hair, orange flight suit", ["the astronaut"]),
    "Theo": ("character", "an old friend of Mara, short hair, warm smile", ["her friend"]),
    "Harbor": ("location", "a harbor at dusk with a wooden pier and sailboats on orange water", ["the pier"]),
    "Forest": ("location", "a forest clearing at noon with tall pines, sun rays and a dirt path", ["the clearing"]),
}


def face_embedder_config() -> list[dict[str, Any]]:
    """Colour histogram for whole frames plus dlib's face descriptor when it is installed."""
    configs: list[dict[str, Any]] = [{"type": "color-histogram"}]
    from memstore.embedders import list_embedders

    if (
        "dlib" in list_embedders()
        and importlib.util.find_spec("dlib")
        and importlib.util.find_spec("face_recognition_models")
    ):
        configs.append({"type": "dlib"})
    return configs


def build_sample_library(db: str | os.PathLike, library: str = "demo") -> Library:
    store = Store.init(db)
    lib = store.library(library)
    lib.configure(embedders=face_embedder_config())
    images = sample_images()
    for name, (kind, description, aliases) in DESCRIPTIONS.items():
        if lib.find(name) is None:
            lib.register(
                name,
                kind,
                images=images[name],
                description=description,
                aliases=aliases,
                rights={"owner": "sample data shipped in PyPI packages", "consent": None},
            )
    return lib


def run_demo(out: str | os.PathLike = "demo-out", *, progress: Callable[[int, int, str], None] | None = None) -> Any:
    from .runner import RunConfig, StoryRunner

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lib = build_sample_library(out / "store")
    story = load_story(DEMO_STORY)
    runner = StoryRunner(lib, out, RunConfig(generator="animatic", memory_policy="relevant"), progress=progress)
    return runner.run(story)
