"""Face identity embedders: detect the largest face, align it, embed it.

Two identity models, each usable with any detector of :mod:`.face_detect` (``detector=``):

- ``dlib``: dlib's ResNet face descriptor (128-d, 99.38% on LFW per dlib), whose weights ship on
  PyPI in ``face_recognition_models`` together with the HOG/MMOD detectors and shape predictors.
  dlib is Boost-licensed and Davis King released these model files into the public domain
  (dlib-models README), so this is the license-clean choice for commercial work. It aligns with
  the 5-point predictor (public domain too); the 68-point predictor, trained on iBUG 300-W whose
  license excludes commercial use, is only loaded when ArcFace needs mouth corners from a dlib
  detection (``insightface`` with ``detector="dlib"``).
- ``insightface``: ArcFace (512-d) from an insightface model pack (``buffalo_l`` etc.) or any
  ArcFace-shaped ONNX file, loaded through insightface's own ``model_zoo``; detection by the
  pack's SCRFD by default. Note: the insightface packs are licensed for non-commercial research
  only; check the license of the weights you configure.

The YuNet detector (libfacedetection, permissive license; run by OpenCV) is the third backend: ``detector="yunet"`` for either model.
An image without a face gives ``Embedding(vector=None)``: recorded, not an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import PrivateAttr

from ..errors import EmbedderError, MissingWeightsError
from .base import Embedder, Embedding, normalize_rows, register_embedder
from .face_detect import Detection, FaceDetector, largest, make_detector
from .face_models import dlib_model, insightface_pack

DetectorName = Literal["dlib", "dlib-cnn", "yunet", "scrfd"]


def to_rgb_array(image: Any) -> np.ndarray:
    """A PIL image (or an HxWx3 uint8 array) as a contiguous RGB uint8 array."""
    if isinstance(image, np.ndarray):
        arr = image
    else:
        arr = np.asarray(image.convert("RGB"))
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise EmbedderError(
            f"face embedders take RGB uint8 images, got an array of shape {arr.shape} and dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr)


class FaceEmbedder(Embedder):
    """Shared part of face embedders: one detector, the largest face, a batch of aligned crops."""

    modality = "face"
    detector: DetectorName = "dlib"
    det_thresh: float | None = None  # None: the detector's default
    max_side: int = 1280  # detect on a copy no larger than this (boxes are scaled back)
    upsample: int = 1  # dlib detectors: upsampling finds faces down to ~40 px
    yunet_model: str | None = None  # default: $CONTINUITY_YUNET, then ../shared/models/yunet

    _detector: Any = PrivateAttr(default=None)

    needs_kps: ClassVar[bool] = False  # whether the aligner needs five landmarks from the detector

    def _scrfd_file(self) -> str | None:
        return None

    def face_detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(
                self.detector,
                threshold=self.det_thresh,
                max_side=self.max_side,
                upsample=self.upsample,
                yunet_model_path=self.yunet_model,
                scrfd_file=self._scrfd_file() if self.detector == "scrfd" else None,
            )
        return self._detector

    def detect_largest(self, image: Any) -> Detection | None:
        """The largest face of an image, or None."""
        return largest(self.face_detector().detect(to_rgb_array(image), want_kps=self.needs_kps))

    def detect_faces(self, image: Any) -> list[Embedding]:
        """Every face of one image, largest first, each with its vector, box and score.

        Registration indexes the largest face only (the subject of a reference image); a
        generated frame can show several characters, and the story loop verifies each of them."""
        rgb = to_rgb_array(image)
        detections = sorted(self.face_detector().detect(rgb, want_kps=self.needs_kps), key=lambda d: -d.area)
        if not detections:
            return []
        vectors = normalize_rows(self._embed_faces([(rgb, det) for det in detections]))
        return [
            Embedding(vector=v, face_box=[float(x) for x in d.box], quality=d.score)
            for v, d in zip(vectors, detections, strict=False)
        ]

    def _embed_faces(self, items: list[tuple[np.ndarray, Detection]]) -> np.ndarray:
        """(len(items), ndims) raw descriptors of one face per image."""
        raise NotImplementedError

    def _embed_batch(self, images: Sequence[Any]) -> list[Embedding]:
        found: list[tuple[int, np.ndarray, Detection]] = []
        for i, image in enumerate(images):
            rgb = to_rgb_array(image)
            det = largest(self.face_detector().detect(rgb, want_kps=self.needs_kps))
            if det is not None:
                found.append((i, rgb, det))
        out = [Embedding(vector=None) for _ in images]
        if not found:
            return out
        vectors = normalize_rows(self._embed_faces([(rgb, det) for _, rgb, det in found]))
        for (i, _, det), vec in zip(found, vectors, strict=False):
            out[i] = Embedding(vector=vec, face_box=[float(v) for v in det.box], quality=det.score)
        return out


@register_embedder("dlib")
class DlibFaceEmbedder(FaceEmbedder):
    """dlib's 128-d ResNet face descriptor on a 150x150 chip aligned by the 5-point shape predictor."""

    num_jitters: int = 0  # >0 averages randomly jittered chips: slower, slightly more robust

    _sp: Any = PrivateAttr(default=None)

    @property
    def ndims(self) -> int:
        return 128

    @property
    def spec(self) -> str:
        return "dlib:dlib_face_recognition_resnet_model_v1"

    def load(self) -> Any:
        if self._model is None:
            import dlib

            self._sp = dlib.shape_predictor(str(dlib_model("shape_predictor_5_face_landmarks.dat")))
            self._model = dlib.face_recognition_model_v1(str(dlib_model("dlib_face_recognition_resnet_model_v1.dat")))
        return self._model

    def chip(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """The aligned 150x150 face chip dlib's network expects (as ``dlib.get_face_chip`` makes it)."""
        import dlib

        self.load()
        x0, y0, x1, y1 = (int(round(v)) for v in det.box)
        shape = self._sp(rgb, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return dlib.get_face_chip(rgb, shape, size=150, padding=0.25)

    def _embed_faces(self, items: list[tuple[np.ndarray, Detection]]) -> np.ndarray:
        model = self.load()
        chips = [self.chip(rgb, det) for rgb, det in items]
        descriptors = model.compute_face_descriptor(chips, self.num_jitters)
        return np.array([np.asarray(d, dtype=np.float32) for d in descriptors], dtype=np.float32)


@register_embedder("insightface")
class InsightFaceEmbedder(FaceEmbedder):
    """ArcFace through insightface's ``model_zoo`` (pack ``model`` under ``root``/models, or a folder;
    ``recognition`` = an ArcFace ONNX file overrides the pack's recognition model)."""

    model: str = "buffalo_l"
    root: str = "~/.insightface"
    recognition: str | None = None
    detector: DetectorName = "scrfd"

    _digest: str | None = PrivateAttr(default=None)

    needs_kps: ClassVar[bool] = True

    # --- files --------------------------------------------------------------------------------
    def _pack(self) -> Path:
        return insightface_pack(self.model, self.root)

    def _pack_file(self, task: str) -> str:
        """The ONNX file of a pack for a task: detection (SCRFD) or recognition (ArcFace)."""
        from insightface.model_zoo import get_model

        pack = self._pack()
        for path in sorted(pack.glob("*.onnx")):
            model = get_model(str(path))
            if getattr(model, "taskname", None) == task:
                return str(path)
        raise MissingWeightsError(f"insightface pack {pack} has no {task} model (*.onnx); give a complete pack")

    def _scrfd_file(self) -> str | None:
        return self._pack_file("detection")

    def _recognition_file(self) -> str:
        if self.recognition:
            path = Path(self.recognition).expanduser()
            if not path.is_file():
                raise MissingWeightsError(
                    f"ArcFace model not found: no file at {path}; pass recognition=/path/to/arcface.onnx of a file that exists"
                )
            return str(path)
        return self._pack_file("recognition")

    # --- naming -------------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        if self.recognition:
            if self._digest is None:  # a file path alone does not name weights: two files may share it
                self._digest = (
                    hashlib.sha256(Path(self.recognition).expanduser().read_bytes()).hexdigest()[:12]
                    if Path(self.recognition).expanduser().is_file()
                    else "missing"
                )
            return f"insightface:{Path(self.recognition).stem}-{self._digest}"
        return f"insightface:{Path(self.model).name}"

    @property
    def ndims(self) -> int:
        return int(self.load().output_shape[-1])

    def load(self) -> Any:
        if self._model is None:
            from insightface.model_zoo import get_model
            from insightface.model_zoo.arcface_onnx import ArcFaceONNX

            path = self._recognition_file()
            model = get_model(path)
            if not isinstance(model, ArcFaceONNX):
                raise EmbedderError(
                    f"{path} is not an ArcFace recognition model for insightface (got {type(model).__name__}); "
                    "expected input 1x3xSxS (S >= 112, a multiple of 16) and one embedding output"
                )
            model.prepare(-1)
            self._model = model
        return self._model

    def aligned(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """The ArcFace-aligned crop (BGR, as insightface feeds it) from the five landmarks."""
        from insightface.utils import face_align

        if det.kps is None:
            raise EmbedderError(f"detector {self.detector!r} gave no landmarks; ArcFace alignment needs five")
        size = self.load().input_size[0]
        return face_align.norm_crop(np.ascontiguousarray(rgb[:, :, ::-1]), landmark=det.kps, image_size=size)

    def _embed_faces(self, items: list[tuple[np.ndarray, Detection]]) -> np.ndarray:
        model = self.load()
        crops = [self.aligned(rgb, det) for rgb, det in items]
        feats = np.asarray(model.get_feat(crops), dtype=np.float32)
        return feats.reshape(len(crops), -1)
