"""Similarity thresholds per embedder: each embedder's cosine scale is its own, so "the same
person" or "the same place" is a number per embedder, kept here for the guard and the keyframe
attribution alike.

dlib's documented same-person rule is a Euclidean distance under 0.6 between raw 128-d descriptors
(dlib's face_recognition example, 99.38% on LFW); on the unit vectors we store, six different
people of insightface's t1.jpg score 0.83-0.91 against the astronaut, and the same photo flipped,
cropped or darkened 0.99, so 0.93 separates them. ArcFace same-person cosines usually exceed 0.4
(insightface model zoo verification); different people stay near 0. The colour histogram is a weak
judge of place: the harbor drawing with a face pasted on it scores 0.93 against the harbor
reference and the same face on a night sky 0.53, but the forest drawing under two character cards
(an animatic frame of the right place) only 0.45-0.60, so it cannot tell right from wrong; the
guard judges images only with a semantic embedder (CLIP), and 0.65 is kept for callers who ask.
"""

from __future__ import annotations

from memstore.embedders import Embedder

#: cosine a face must reach against a character's references, by face embedder
FACE_THRESHOLDS = {"dlib": 0.93, "insightface": 0.40}
#: cosine a frame must reach against an entity's references, by image embedder
IMAGE_THRESHOLDS = {"color-histogram": 0.65, "open-clip": 0.55}
#: image embedders that know what is in a picture; a colour histogram judges only whole scenes
SEMANTIC_IMAGE_EMBEDDERS = frozenset({"open-clip"})
DEFAULT_FACE_THRESHOLD = 0.5
DEFAULT_IMAGE_THRESHOLD = 0.5


def face_threshold(embedder: Embedder) -> float:
    return FACE_THRESHOLDS.get(embedder.type_name, DEFAULT_FACE_THRESHOLD)


def image_threshold(embedder: Embedder) -> float:
    return IMAGE_THRESHOLDS.get(embedder.type_name, DEFAULT_IMAGE_THRESHOLD)
