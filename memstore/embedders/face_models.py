"""Where face model files live, and the error that says so when they do not.

- dlib's models ship on PyPI in ``face_recognition_models``; its ``__init__`` imports
  ``pkg_resources`` (absent from modern setuptools), so the folder is found through the import
  system's spec without importing the module.
- YuNet is looked up at an explicit path, then ``$CONTINUITY_YUNET``, then
  ``../shared/models/yunet/yunet_s_640_640.onnx`` beside the project.
- insightface model packs (``buffalo_l``...) are folders of ONNX files under
  ``<root>/models/<name>`` (root defaults to ``~/.insightface``), or any folder given by path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import MissingExtraError, MissingWeightsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
YUNET_ENV = "CONTINUITY_YUNET"
YUNET_DEFAULT = PROJECT_ROOT.parent / "shared" / "models" / "yunet" / "yunet_s_640_640.onnx"


def dlib_model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "face_recognition_models is not installed; install the extra: pip install 'continuity[faces]' "
            "(or pip install face_recognition_models)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model(filename: str) -> Path:
    path = dlib_model_dir() / filename
    if not path.is_file():
        raise MissingWeightsError(
            f"dlib model {filename} not found at {path}; reinstall it: pip install --force-reinstall face_recognition_models"
        )
    return path


def yunet_candidates(explicit: str | None = None) -> list[Path]:
    paths = []
    if explicit:
        paths.append(Path(explicit).expanduser())
    if os.environ.get(YUNET_ENV):
        paths.append(Path(os.environ[YUNET_ENV]).expanduser())
    paths.append(YUNET_DEFAULT)
    return paths


def yunet_model(explicit: str | None = None) -> Path:
    """The YuNet ONNX file: the explicit path when given (it must exist), else the env var, else shared/."""
    candidates = yunet_candidates(explicit)
    if explicit:
        candidates = candidates[:1]
    for path in candidates:
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"YuNet face detector not found (looked in: {', '.join(str(p) for p in candidates)}); "
        f"download face_detection_yunet_2023mar.onnx (OpenCV zoo) and pass yunet_model=PATH or set {YUNET_ENV}"
    )


def insightface_pack(model: str, root: str = "~/.insightface") -> Path:
    """The folder of an insightface model pack given by name (looked up under root/models) or by path."""
    direct = Path(model).expanduser()
    candidates = [direct] if (direct.is_absolute() or os.sep in model) else []
    candidates.append(Path(root).expanduser() / "models" / model)
    for path in candidates:
        if path.is_dir() and any(path.glob("*.onnx")):
            return path
    raise MissingWeightsError(
        f"insightface model pack {model!r} not found (looked in: {', '.join(str(p) for p in candidates)}); "
        "unpack it there (e.g. buffalo_l.zip from the insightface releases; note its non-commercial license), "
        "or pass model=/path/to/folder, or recognition=/path/to/arcface.onnx with detector='yunet' or 'dlib'"
    )
