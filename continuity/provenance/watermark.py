"""An invisible watermark in every frame: a short id that resolves to the shot's record in the store.

Content credentials (:mod:`.credentials`) travel in the file and are lost to a re-encode or a screen
capture; the watermark lives in the pixels. It is the classical DWT-DCT method of the
``invisible-watermark`` package (the one SDXL uses; no weights): each bit is quantised into the
largest DCT coefficient of 4x4 blocks of the Haar approximation band, repeated over the whole frame.

The payload is 48 bits: a 32-bit id (8 hex digits) and its CRC-16, so a decode of noise or of an
unmarked frame is recognised as "no watermark" instead of naming a random shot. The id is derived
from the shot (library, story, index, input hash): a resumed shot keeps its id.

Two changes to the package's method, both readable by its own decoder: the embedding runs on
float YUV (the package's uint8 path wraps pushed values around: white turns black) and never lets
the marked coefficient fall below its block's runner-up (else the decoder reads another one). The
reader tries a small grid of level corrections, since each MP4 generation shifts levels a little.

Survival (``benchmarks/results/provenance.json``): JPEG quality 75 and a half-size copy (read after
scaling it back up) keep it, a second-generation MP4 re-encode mostly; a crop moves the block grid,
which this method cannot find again (measured, not hidden).
"""

from __future__ import annotations

import binascii
import hashlib
import importlib.util
import itertools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError, MissingExtraError

ID_BITS = 32
CHECK_BITS = 16
PAYLOAD_BITS = ID_BITS + CHECK_BITS
METHOD = "dwtDct"
# luminance only, at 40 (PSNR about 37 dB): the package's default (U at 36) does not survive JPEG 75
SCALES = (40, 0, 0)
MIN_PIXELS = 256 * 256  # the package refuses smaller frames: too few blocks per bit
BLOCK = 4
# level corrections the reader tries (LL band values are twice the pixel level)
GAINS = tuple(1.0 + 0.01 * k for k in range(-6, 7))
OFFSETS = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)
REPAIR_CANDIDATES = 8
TOP_READINGS = 4  # least certain bits a failed check may flip (one or two of them)
_ID_RE = re.compile(r"^[0-9a-f]{8}$")

__all__ = [
    "PAYLOAD_BITS",
    "can_watermark",
    "clean_watermark_id",
    "decode_frames",
    "decode_image",
    "embed_image",
    "embed_frames",
    "watermark_id",
]


def _max_dct() -> Any:
    """The package's DWT-DCT embedder class, ``imwatermark.maxDct.EmbedMaxDct``.

    Loaded from its file: the package's ``__init__`` imports torch for its RivaGAN method, which
    this module does not use, and that costs seconds per process."""
    global _EMBED_MAX_DCT
    if _EMBED_MAX_DCT is None:
        spec = importlib.util.find_spec("imwatermark")
        if spec is None or not spec.submodule_search_locations:
            raise MissingExtraError(
                "'invisible-watermark' is not installed; install the extra: pip install 'continuity[provenance]'"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "maxDct.py"
        module_spec = importlib.util.spec_from_file_location("_continuity_imwatermark_maxdct", path)
        if module_spec is None or module_spec.loader is None:
            raise MissingExtraError(f"'invisible-watermark' at {path.parent} lacks maxDct.py; reinstall it")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        _EMBED_MAX_DCT = module.EmbedMaxDct
    return _EMBED_MAX_DCT


_EMBED_MAX_DCT: Any = None


def watermark_id(library: str, story_id: str, shot_index: int, input_hash: str) -> str:
    """The shot's 32-bit watermark id as 8 hex digits (stable for the same shot inputs)."""
    key = "\x1f".join([library, story_id, str(int(shot_index)), input_hash]).encode("utf-8")
    return hashlib.sha256(key).hexdigest()[: ID_BITS // 4]


def clean_watermark_id(value: object) -> str:
    """A watermark id as 8 lowercase hex digits, or InvalidInputError."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if not _ID_RE.match(text):
        raise InvalidInputError(f"a watermark id is 8 hex digits (e.g. 1f0c9a2b), got {str(value)[:40]!r}")
    return text


def _check(body: bytes) -> int:
    # a non-zero start: with 0, an all-zero read (an unmarked flat frame) would pass its own check
    return binascii.crc_hqx(body, 0xFFFF)


def _payload(wid: str) -> bytes:
    body = bytes.fromhex(clean_watermark_id(wid))
    return body + _check(body).to_bytes(2, "big")


def _id_of_bits(bits: np.ndarray) -> str | None:
    raw = np.packbits(np.asarray(bits, dtype=np.uint8)[:PAYLOAD_BITS]).tobytes()
    body, check = raw[:4], int.from_bytes(raw[4:6], "big")
    return body.hex() if _check(body) == check else None


def _id_of(readings: np.ndarray) -> str | None:
    """The id carried by the first of the readings (rows of 48 bit scores) whose check matches;
    else the first reading repaired (see :func:`_repaired`)."""
    readings = np.atleast_2d(readings)
    for scores in readings:
        found = _id_of_bits((scores > 0.5).astype(np.uint8))
        if found is not None:
            return found
    return _repaired(readings[0])


def _repaired(scores: np.ndarray) -> str | None:
    """The id carried by 48 bit scores (each the share of its blocks that read 1), or None.

    A read whose check fails is retried with up to two of its least certain bits flipped (37
    candidates): that repairs the one or two bits a re-encode flips, at a false-match rate of
    about 37 / 65536 per read, which the store lookup then screens."""
    scores = np.asarray(scores, dtype=np.float64)
    bits = (scores > 0.5).astype(np.uint8)
    found = _id_of_bits(bits)
    if found is not None:
        return found
    doubtful = np.argsort(np.abs(scores - 0.5))[:REPAIR_CANDIDATES]
    for flips in itertools.chain(itertools.combinations(doubtful, 1), itertools.combinations(doubtful, 2)):
        trial = bits.copy()
        trial[list(flips)] ^= 1
        found = _id_of_bits(trial)
        if found is not None:
            return found
    return None


def can_watermark(width: int, height: int) -> bool:
    return int(width) * int(height) >= MIN_PIXELS


def _yuv(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(rgb, dtype=np.float32) / 255.0, cv2.COLOR_RGB2YUV).astype(np.float64) * 255.0


def _rgb(yuv: np.ndarray) -> np.ndarray:
    import cv2

    rgb = cv2.cvtColor((yuv / 255.0).astype(np.float32), cv2.COLOR_YUV2RGB) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _marked_channels() -> list[tuple[int, int]]:
    return [(channel, scale) for channel, scale in enumerate(SCALES[:2]) if scale > 0]


def _blocks(approx: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The band's 4x4 blocks as rows of 16, in the package's raster order (bit = block % 48)."""
    rows, cols = approx.shape[0] // BLOCK, approx.shape[1] // BLOCK
    cut = approx[: rows * BLOCK, : cols * BLOCK]
    return cut.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(rows * cols, BLOCK * BLOCK), (rows, cols)


def _unblocks(blocks: np.ndarray, shape: tuple[int, int], approx: np.ndarray) -> None:
    rows, cols = shape
    approx[: rows * BLOCK, : cols * BLOCK] = (
        blocks.reshape(rows, cols, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK)
    )


def _strongest(blocks: np.ndarray) -> np.ndarray:
    """Per block, the position of its largest coefficient after the first (the package's rule)."""
    return np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1


def embed_band(approx: np.ndarray, bits: np.ndarray, scale: float, *, keep_strongest: bool = True) -> None:
    """``EmbedMaxDct.encode_frame`` of the package, vectorised (it loops in Python per block:
    ~220 ms per 640x360 frame); with ``keep_strongest=False`` the tests check both give the same
    band. The package's own decoder reads what this writes either way."""
    blocks, shape = _blocks(approx)
    index = np.arange(len(blocks))
    pos = _strongest(blocks)
    value = blocks[index, pos]
    bit = bits[index % len(bits)].astype(np.float64)
    step = np.abs(value) // scale
    if keep_strongest:
        # the decoder reads the block's largest coefficient: where quantising would drop this one
        # below the runner-up, the next lattice point up keeps it the largest (and the bit readable)
        rest = np.abs(blocks[:, 1:]).copy()
        rest[index, pos - 1] = -1.0
        runner_up = rest.max(axis=1)
        step = np.maximum(step, np.ceil((runner_up + 0.25 * scale) / scale - 0.25 - 0.5 * bit))
    moved = (step + 0.25 + 0.5 * bit) * scale
    blocks[index, pos] = np.where(value >= 0, moved, -moved)
    _unblocks(blocks, shape, approx)


def read_band(approx: np.ndarray, length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per bit, the sum and the count of its blocks' readings (``EmbedMaxDct.decode_frame``)."""
    value, which = _strongest_values(approx, length)
    ones = (value % scale > 0.5 * scale).astype(np.float64)
    return np.bincount(which, weights=ones, minlength=length), np.bincount(which, minlength=length)


def _strongest_values(approx: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the magnitude the decoder reads and the bit it carries."""
    blocks, _ = _blocks(approx)
    index = np.arange(len(blocks))
    return np.abs(blocks[index, _strongest(blocks)]), index % length


def _scores(value: np.ndarray, which: np.ndarray, scale: float, length: int) -> np.ndarray:
    ones = (value % scale > 0.5 * scale).astype(np.float64)
    return np.bincount(which, weights=ones, minlength=length) / np.maximum(np.bincount(which, minlength=length), 1)


def embed_image(rgb: np.ndarray, wid: str) -> np.ndarray:
    """One RGB uint8 image with ``wid`` embedded.

    The package's own ``encode`` works on uint8 YUV and lets a pushed coefficient wrap around
    (white turns black); this runs the same method on float YUV and clips once at the end."""
    import pywt

    bits = np.unpackbits(np.frombuffer(_payload(wid), dtype=np.uint8))
    yuv = _yuv(rgb)
    height, width = (yuv.shape[0] // 4) * 4, (yuv.shape[1] // 4) * 4
    for channel, scale in _marked_channels():
        approx, details = pywt.dwt2(yuv[:height, :width, channel], "haar")
        embed_band(approx, bits, scale)
        yuv[:height, :width, channel] = pywt.idwt2((approx, details), "haar")
    return _rgb(yuv)


def embed_frames(frames: np.ndarray, wid: str) -> np.ndarray:
    """``frames`` (T x H x W x 3 RGB uint8) with ``wid`` embedded in each; InvalidInputError when
    the frames are smaller than the method allows (see :func:`can_watermark`)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInputError(f"frames must be T x H x W x 3 uint8, got shape {frames.shape} dtype {frames.dtype}")
    height, width = frames.shape[1:3]
    if not can_watermark(width, height):
        raise InvalidInputError(f"frames of {width}x{height} are too small to watermark; at least 256x256 pixels")
    clean_watermark_id(wid)
    return np.stack([embed_image(frame, wid) for frame in frames])


def _bits_at(rgb: np.ndarray) -> np.ndarray:
    """The most decisive readings (TOP_READINGS x 48 bit scores: per bit, the share of its
    blocks that read 1) of one image.

    The method quantises absolute levels, so a copy whose brightness or contrast moved a little
    (each MP4 generation's RGB -> limited-range YUV -> RGB round trip does) reads as noise; the
    levels are read under a small grid of gains and offsets and the most decisive reading wins."""
    import pywt

    yuv = _yuv(rgb)
    height, width = (yuv.shape[0] // 4) * 4, (yuv.shape[1] // 4) * 4
    readings = []
    for channel, scale in _marked_channels():
        approx, _ = pywt.dwt2(yuv[:height, :width, channel], "haar")
        readings.append((*_strongest_values(approx, PAYLOAD_BITS), scale))
    ranked = []
    for gain in GAINS:
        for offset in OFFSETS:
            parts = [_scores(gain * value + offset, which, scale, PAYLOAD_BITS) for value, which, scale in readings]
            scores = np.mean(parts, axis=0)
            ranked.append((float(np.mean(np.abs(scores - 0.5))), gain == 1.0 and offset == 0.0, scores))
    # the plain reading first among equals; a shift by half a step reads every bit inverted and
    # just as decisively, so the few most decisive readings go on to the check
    ranked.sort(key=lambda r: (-round(r[0], 3), not r[1]))
    return np.stack([r[2] for r in ranked[:TOP_READINGS]])


def _scaled(rgb: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    return cv2.resize(rgb, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC)


def _frame_bits(rgb: np.ndarray) -> Iterator[np.ndarray]:
    """Bits read at the image's own size, then at twice it (a half-size copy, read near the size
    it was marked at); lazily, so a clean read costs one pass."""
    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, :3])
    if can_watermark(rgb.shape[1], rgb.shape[0]):
        yield _bits_at(rgb)
    yield _bits_at(_scaled(rgb, 2))


def decode_image(rgb: np.ndarray) -> str | None:
    """The watermark id in one RGB image, or None when none is found."""
    for bits in _frame_bits(rgb):
        found = _id_of(bits)
        if found is not None:
            return found
    return None


def decode_frames(frames: Sequence[np.ndarray] | np.ndarray, max_frames: int = 16) -> Counter[str]:
    """Watermark ids found in up to ``max_frames`` evenly spaced frames, with how many frames carry
    each (a story MP4 holds one id per shot). When no single frame decodes, the frames' bits are
    voted on together, which recovers a shot whose frames were each degraded a little."""
    count = len(frames)
    found: Counter[str] = Counter()
    if count == 0:
        return found
    picks = sorted({int(round(i)) for i in np.linspace(0, count - 1, num=min(max_frames, count))})
    votes: list[np.ndarray] = []
    for i in picks:
        first = None
        for bits in _frame_bits(frames[i]):
            first = bits if first is None else first
            wid = _id_of(bits)
            if wid is not None:
                found[wid] += 1
                break
        if first is not None:
            votes.append(first)
    if not found and votes:
        # reading k of every frame, averaged: the frames of one shot share their level shift
        voted = _id_of(np.mean(votes, axis=0))
        if voted is not None:
            found[voted] = len(votes)
    return found
