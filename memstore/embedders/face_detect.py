"""Face detectors behind one small interface: ``detect(rgb) -> list[Detection]``.

- ``dlib``: dlib's HOG frontal detector (``dlib-cnn``: its MMOD CNN detector, slower, better on
  hard poses); five ArcFace landmarks come from the 68-point shape predictor when asked for
  (note: that predictor's training data, iBUG 300-W, excludes commercial use; YuNet does not).
- ``yunet``: OpenCV's ``FaceDetectorYN`` with the YuNet ONNX model; gives five landmarks itself.
- ``scrfd``: insightface's SCRFD from a model pack; gives five landmarks itself.

Landmarks are in ArcFace order: the eye on the image's left, the other eye, nose tip, the mouth
corner on the image's left, the other corner. Scores are mapped to [0, 1] (the quality recorded).
Large images are detected on a copy scaled to ``max_side`` and boxes are scaled back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EmbedderError, MissingExtraError
from .face_models import dlib_model, yunet_model

DETECTORS = ("dlib", "dlib-cnn", "yunet", "scrfd")
DEFAULT_THRESHOLDS = {"dlib": 0.2, "dlib-cnn": 0.2, "yunet": 0.6, "scrfd": 0.5}


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the original image
    score: float  # in [0, 1]
    kps: np.ndarray | None = None  # (5, 2) ArcFace-order landmarks, pixels

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def largest(detections: list[Detection]) -> Detection | None:
    """The face with the largest box (the subject of a reference image); ties go to the higher score."""
    return max(detections, key=lambda d: (round(d.area), d.score), default=None)


def _margin_to_unit(margin: float) -> float:
    # dlib reports SVM/MMOD margins (0 at its threshold, ~3 for a clear frontal face).
    return float(1.0 - math.exp(-max(0.0, margin)))


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtraError(
            f"{module} is not installed; install the extra: pip install 'continuity[{extra}]'"
        ) from None


class FaceDetector:
    """Base: scale down, call :meth:`_detect` on the scaled copy, clip and scale results back."""

    name = ""

    def __init__(self, threshold: float | None = None, max_side: int = 1280):
        self.threshold = DEFAULT_THRESHOLDS[self.name] if threshold is None else float(threshold)
        self.max_side = int(max_side)

    def _detect(self, rgb: np.ndarray, want_kps: bool) -> list[Detection]:
        raise NotImplementedError

    def detect(self, rgb: np.ndarray, *, want_kps: bool = False) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = (
            rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        )
        out = []
        for det in self._detect(np.ascontiguousarray(small), want_kps):
            x0, y0, x1, y1 = (v / scale for v in det.box)
            box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            kps = None if det.kps is None else np.asarray(det.kps, dtype=np.float32) / scale
            out.append(Detection(box, min(1.0, max(0.0, det.score)), kps))
        return out


class DlibDetector(FaceDetector):
    name = "dlib"

    def __init__(self, threshold: float | None = None, max_side: int = 1280, upsample: int = 1, cnn: bool = False):
        if cnn:
            self.name = "dlib-cnn"
        super().__init__(threshold, max_side)
        dlib = _require("dlib", "faces")
        self.upsample = int(upsample)
        self.cnn = dlib.cnn_face_detection_model_v1(str(dlib_model("mmod_human_face_detector.dat"))) if cnn else None
        self.hog = None if cnn else dlib.get_frontal_face_detector()
        self._landmarks68: Any = None

    def _detect(self, rgb: np.ndarray, want_kps: bool) -> list[Detection]:

        if self.cnn is not None:
            found = [(d.rect, d.confidence) for d in self.cnn(rgb, self.upsample) if d.confidence >= self.threshold]
        else:
            assert self.hog is not None  # one of the two detectors is always loaded
            rects, scores, _ = self.hog.run(rgb, self.upsample, self.threshold)
            found = list(zip(rects, scores, strict=False))
        out = []
        for rect, score in found:
            box = (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))
            kps = self._kps(rgb, rect) if want_kps else None
            out.append(Detection(box, _margin_to_unit(score), kps))
        return out

    def _kps(self, rgb: np.ndarray, rect: Any) -> np.ndarray:
        """Five ArcFace landmarks from dlib's 68-point model (eye centres, nose tip, mouth corners)."""
        import dlib

        if self._landmarks68 is None:
            self._landmarks68 = dlib.shape_predictor(str(dlib_model("shape_predictor_68_face_landmarks.dat")))
        shape = self._landmarks68(rgb, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])


class YuNetDetector(FaceDetector):
    name = "yunet"

    def __init__(self, threshold: float | None = None, max_side: int = 1280, model_path: str | None = None):
        super().__init__(threshold, max_side)
        cv2 = _require("cv2", "faces")
        self.model_path = str(yunet_model(model_path))
        try:
            self.net = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), self.threshold, 0.3, 5000)
        except cv2.error as exc:
            raise EmbedderError(
                f"cannot load YuNet from {self.model_path}: {str(exc).splitlines()[-1]}; give a YuNet ONNX file"
            ) from None

    def _detect(self, rgb: np.ndarray, want_kps: bool) -> list[Detection]:
        h, w = rgb.shape[:2]
        self.net.setInputSize((w, h))
        _, faces = self.net.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        out = []
        for row in faces if faces is not None else []:
            x, y, bw, bh = (float(v) for v in row[:4])
            kps = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)  # already in ArcFace order
            out.append(Detection((x, y, x + bw, y + bh), float(row[14]), kps))
        return out


class ScrfdDetector(FaceDetector):
    name = "scrfd"

    def __init__(
        self,
        model_file: str,
        threshold: float | None = None,
        max_side: int = 1280,
        det_size: int = 640,
        ctx_id: int = -1,
    ):
        super().__init__(threshold, max_side)
        _require("insightface", "insightface")
        from insightface.model_zoo import get_model

        self.model = get_model(model_file)
        if self.model is None or getattr(self.model, "taskname", "") != "detection":
            raise EmbedderError(
                f"{model_file} is not an SCRFD face detector; give the det_*.onnx of an insightface pack"
            )
        self.model.prepare(ctx_id, input_size=(det_size, det_size), det_thresh=self.threshold)

    def _detect(self, rgb: np.ndarray, want_kps: bool) -> list[Detection]:
        boxes, kpss = self.model.detect(np.ascontiguousarray(rgb[:, :, ::-1]), max_num=0)
        out = []
        for i, row in enumerate(boxes):
            kps = None if kpss is None else np.asarray(kpss[i], dtype=np.float32)
            x0, y0, x1, y1 = (float(v) for v in row[:4])
            out.append(Detection((x0, y0, x1, y1), float(row[4]), kps))
        return out


def make_detector(
    name: str,
    *,
    threshold: float | None = None,
    max_side: int = 1280,
    upsample: int = 1,
    yunet_model_path: str | None = None,
    scrfd_file: str | None = None,
) -> FaceDetector:
    if name == "dlib":
        return DlibDetector(threshold, max_side, upsample)
    if name == "dlib-cnn":
        return DlibDetector(threshold, max_side, upsample, cnn=True)
    if name == "yunet":
        return YuNetDetector(threshold, max_side, yunet_model_path)
    if name == "scrfd":
        if scrfd_file is None:
            raise EmbedderError(
                "detector 'scrfd' needs an insightface model pack with a det_*.onnx; use detector='yunet' or 'dlib'"
            )
        return ScrfdDetector(scrfd_file, threshold, max_side)
    raise EmbedderError(f"unknown face detector {name!r}; expected one of {DETECTORS}")
