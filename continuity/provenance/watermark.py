"""An invisible watermark in every frame: a short id that resolves to the shot's record in the store.

Content credentials (:mod:`.credentials`) travel in the file and are lost to a re-encode or a screen
capture; the watermark lives in the pixels. It is the classical DWT-DCT method of the
``invisible-watermark`` package (the one SDXL uses; no weights): each bit is quantised into the
largest coefficient of a 4x4 block of the Haar approximation band (an 8x8 block of pixels).

The payload is 64 bits: a 32-bit id (8 hex digits) and its 32-bit check (CRC-32 of a salt and the
id), so a decode of noise or of an unmarked frame is recognised as "no watermark" instead of naming
a random shot; no change of 1 to 5 bits of a payload passes its check.
The id is derived from the shot (library, story, index, input hash): a resumed shot keeps its id.

Layout: the bits repeat on a tile of 8 x 8 blocks (block row r, column c carries bit
``(r % 8) * 8 + c % 8``), so a crop only moves the tile, it does not scramble it. The reader
finds the crop again: it reads the band at each of the 64 pixel offsets of the 8-pixel block grid,
ranks them by how tightly the read values sit on the quantiser's lattice (a circular statistic that
also gives the level correction an MP4 generation needs), and for the best few tries the 64 cyclic
shifts of the tile (and the inverted reading) against the check, with up to two of the least
certain bits repaired. :data:`MAX_TRIES_PER_IMAGE` counts the check evaluations one image can
cost; each passes by chance with probability 2**-32 (:func:`false_match_bound`).

Two changes to the package's method: the embedding runs on float YUV (the package's uint8 path
wraps pushed values around: white turns black) and never lets the marked coefficient fall below its
block's runner-up (else the decoder reads another one). :func:`embed_band` with the package's
raster layout is checked against the package's own encoder by the tests.

Survival (``benchmarks/results/provenance.json``): JPEG quality 75, a half-size copy (read after
scaling it back up), a second-generation MP4 re-encode and a 10% crop at any pixel offset. A copy
that was rescaled by another factor, rotated or cropped and rescaled is not searched for.
"""

from __future__ import annotations

import binascii
import hashlib
import importlib.util
import itertools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError, MissingExtraError

ID_BITS = 32
CHECK_BITS = 32
PAYLOAD_BITS = ID_BITS + CHECK_BITS
TILE = 8  # the payload tile: TILE x TILE blocks, one bit each (TILE * TILE == PAYLOAD_BITS)
METHOD = "dwtDct"
SCALE = 40.0  # luminance only (PSNR about 37 dB): the package's default (U at 36) does not survive JPEG 75
SCALES = (SCALE, 0, 0)  # the package's per-channel form (Y, U, V)
MIN_PIXELS = 256 * 256  # the package refuses smaller frames: too few blocks per bit
BLOCK = 4  # band block side; one band pixel is 2x2 image pixels
GRID = 2 * BLOCK  # the block grid's period in image pixels: the crop offsets the reader tries
# level corrections the reader tries (each MP4 generation shifts levels a little); the offset is solved
GAINS = tuple(1.0 + 0.01 * k for k in range(-6, 7))
PHASES_TRIED = 4  # grid offsets besides the image's own, strongest first, whose readings go on to the check
RANK_SAMPLE = 2048  # blocks per offset read to rank offsets (plenty: an unmarked grid ranks near 1 / sqrt(2048))
REPAIR_CANDIDATES = 4  # least certain bits a failed check may flip (one or two of them)
_REPAIRS = 1 + REPAIR_CANDIDATES + REPAIR_CANDIDATES * (REPAIR_CANDIDATES - 1) // 2
TRIES_PER_READING = 2 * TILE * TILE * _REPAIRS  # inversions x tile shifts x (plain + repairs)
READ_SIZES = 2  # own size, then twice it (a half-size copy)
# per size: the previous frame's offset (decode_frames), the image's own grid, the ranked others
READINGS_PER_IMAGE = READ_SIZES * (2 + PHASES_TRIED)
MAX_TRIES_PER_IMAGE = READINGS_PER_IMAGE * TRIES_PER_READING
VOTE_READINGS = 2  # decode_frames' vote, when no frame decodes alone: own grid, most often strongest offset
_CHECK_SALT = b"continuity watermark v2"
SATURATED = 2 * 253.0  # band values of white: a 0 cannot be marked there (clipped), so they are not read
_ID_RE = re.compile(r"^[0-9a-f]{8}$")

__all__ = [
    "MAX_TRIES_PER_IMAGE",
    "PAYLOAD_BITS",
    "can_watermark",
    "clean_watermark_id",
    "decode_frames",
    "decode_image",
    "embed_image",
    "embed_frames",
    "false_match_bound",
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
    """The id's 32-bit check: CRC-32 of a salt and the id. The salt keeps an all-zero or all-one
    read (a flat or saturated frame) from passing (CRC-32 of four 0xff bytes is 0xffffffff)."""
    return binascii.crc32(_CHECK_SALT + body)


def _syndrome_tables() -> tuple[int, np.ndarray, np.ndarray]:
    """CRC-32 is affine in the message bits, so a 64-bit word's syndrome (its check XOR the check
    of its id; 0 when valid) is a constant XOR one column per set bit. Returns the constant, the
    64 columns (a flipped bit changes the syndrome by its column) and per-byte lookup tables."""
    zero = _check(bytes(ID_BITS // 8))
    columns = np.zeros(PAYLOAD_BITS, dtype=np.uint32)
    for j in range(ID_BITS):
        body = bytearray(ID_BITS // 8)
        body[j // 8] = 0x80 >> (j % 8)
        columns[j] = _check(bytes(body)) ^ zero
    for k in range(CHECK_BITS):
        columns[ID_BITS + k] = 1 << (CHECK_BITS - 1 - k)
    values = np.arange(256, dtype=np.uint8)
    tables = np.zeros((PAYLOAD_BITS // 8, 256), dtype=np.uint32)
    for byte in range(PAYLOAD_BITS // 8):
        bits = np.unpackbits(values[:, None], axis=1).astype(bool)
        tables[byte] = np.bitwise_xor.reduce(np.where(bits, columns[8 * byte : 8 * byte + 8], 0), axis=1)
    return zero, columns, tables


_SYNDROME_ZERO, _COLUMNS, _BYTE_TABLES = _syndrome_tables()


def _syndromes(bits: np.ndarray) -> np.ndarray:
    """Per row of 64 bits (id then check), the syndrome: 0 where the check matches."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), axis=1)
    out = np.full(len(packed), _SYNDROME_ZERO, dtype=np.uint32)
    for byte in range(packed.shape[1]):
        out ^= _BYTE_TABLES[byte][packed[:, byte]]
    return out


def _payload(wid: str) -> bytes:
    body = bytes.fromhex(clean_watermark_id(wid))
    return body + _check(body).to_bytes(CHECK_BITS // 8, "big")


def payload_bits(wid: str) -> np.ndarray:
    """The 64 bits embedded for ``wid`` (id, then its check), as uint8 0/1."""
    return np.unpackbits(np.frombuffer(_payload(wid), dtype=np.uint8))


def _id_of_bits(bits: np.ndarray) -> str | None:
    raw = np.packbits(np.asarray(bits, dtype=np.uint8)[:PAYLOAD_BITS]).tobytes()
    body, check = raw[: ID_BITS // 8], int.from_bytes(raw[ID_BITS // 8 :], "big")
    return body.hex() if _check(body) == check else None


def _first_valid(scores: np.ndarray) -> str | None:
    """The id of the first row of soft bit scores (positive reads 1) that passes the check as read;
    else of the first that passes with one or two of its ``REPAIR_CANDIDATES`` least certain bits
    flipped (the one or two a re-encode flips). Each row costs ``_REPAIRS`` check evaluations,
    computed at once from the syndromes."""
    bits = (scores > 0).astype(np.uint8)
    syndrome = _syndromes(bits)
    plain = np.flatnonzero(syndrome == 0)
    if len(plain):
        return _id_of_bits(bits[plain[0]])
    doubtful = np.argsort(np.abs(scores), axis=1)[:, :REPAIR_CANDIDATES]
    columns = _COLUMNS[doubtful]  # rows x candidates: the syndrome change of flipping each
    pairs = np.array(list(itertools.combinations(range(REPAIR_CANDIDATES), 2)))
    flips = np.concatenate([columns, columns[:, pairs[:, 0]] ^ columns[:, pairs[:, 1]]], axis=1)
    hits = flips == syndrome[:, None]
    rows = np.flatnonzero(hits.any(axis=1))
    if not len(rows):
        return None
    row, choice = rows[0], int(np.argmax(hits[rows[0]]))
    flipped = [choice] if choice < REPAIR_CANDIDATES else list(pairs[choice - REPAIR_CANDIDATES])
    trial = bits[row].copy()
    trial[doubtful[row, flipped]] ^= 1
    return _id_of_bits(trial)


def _tile_candidates(tile: np.ndarray) -> np.ndarray:
    """The 128 ways a TILE x TILE reading may hold the payload: a crop moves the tile cyclically
    (64 shifts) and a level shift by half a step inverts every bit (x2); rows of 64 scores."""
    shifts = [np.roll(tile, (rows, cols), axis=(0, 1)).ravel() for rows in range(TILE) for cols in range(TILE)]
    return np.concatenate([np.stack(shifts), -np.stack(shifts)])


def _id_of_tile(tile: np.ndarray) -> str | None:
    """The id in a TILE x TILE reading (soft scores, as read from the copy's own block grid), at
    ``TRIES_PER_READING`` check evaluations at most."""
    return _first_valid(_tile_candidates(tile))


def false_match_bound(images: int = 1, videos: int = 0) -> float:
    """Upper bound on the chance that reading ``images`` unmarked images (and voting over
    ``videos`` videos' frames, as :func:`decode_frames` does) names any id: every check evaluation
    passes by chance with probability 2**-CHECK_BITS (union bound)."""
    checks = images * MAX_TRIES_PER_IMAGE + videos * VOTE_READINGS * TRIES_PER_READING
    return min(1.0, checks / 2.0**CHECK_BITS)


def can_watermark(width: int, height: int) -> bool:
    return int(width) * int(height) >= MIN_PIXELS


def _yuv(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(rgb, dtype=np.float32) / 255.0, cv2.COLOR_RGB2YUV).astype(np.float64) * 255.0


def _rgb(yuv: np.ndarray) -> np.ndarray:
    import cv2

    rgb = cv2.cvtColor((yuv / 255.0).astype(np.float32), cv2.COLOR_YUV2RGB) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _blocks(approx: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The band's 4x4 blocks as rows of 16, in the package's raster order."""
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


def tile_layout(rows: int, cols: int) -> np.ndarray:
    """The bit each block of a rows x cols grid carries (raster order): ``(r % TILE) * TILE + c % TILE``."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return ((r % TILE) * TILE + c % TILE).ravel()


def embed_band(
    approx: np.ndarray,
    bits: np.ndarray,
    scale: float,
    *,
    keep_strongest: bool = True,
    layout: np.ndarray | None = None,
) -> None:
    """``EmbedMaxDct.encode_frame`` of the package, vectorised (it loops in Python per block:
    ~220 ms per 640x360 frame). ``layout`` gives each block's bit index; the default is the
    package's (block number modulo the payload length), which with ``keep_strongest=False`` the
    tests check gives the package's band."""
    blocks, shape = _blocks(approx)
    index = np.arange(len(blocks))
    pos = _strongest(blocks)
    value = blocks[index, pos]
    which = index % len(bits) if layout is None else layout
    bit = bits[which].astype(np.float64)
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
    """Per bit, the sum and the count of its blocks' readings in the package's raster layout
    (``EmbedMaxDct.decode_frame``)."""
    blocks, _ = _blocks(approx)
    value = np.abs(blocks[np.arange(len(blocks)), _strongest(blocks)])
    which = np.arange(len(blocks)) % length
    ones = (value % scale > 0.5 * scale).astype(np.float64)
    return np.bincount(which, weights=ones, minlength=length), np.bincount(which, minlength=length)


def embed_image(rgb: np.ndarray, wid: str) -> np.ndarray:
    """One RGB uint8 image with ``wid`` embedded (luminance only), in the tiled layout.

    The package's own ``encode`` works on uint8 YUV and lets a pushed coefficient wrap around
    (white turns black); this runs the same method on float YUV and clips once at the end."""
    return _embed_bits(rgb, payload_bits(wid))


def _embed_bits(rgb: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """One RGB uint8 image with the 64 ``bits`` (id, check) embedded; the tests forge payloads with it."""
    import pywt

    yuv = _yuv(rgb)
    height, width = (yuv.shape[0] // 4) * 4, (yuv.shape[1] // 4) * 4
    approx, details = pywt.dwt2(yuv[:height, :width, 0], "haar")
    layout = tile_layout(approx.shape[0] // BLOCK, approx.shape[1] // BLOCK)
    embed_band(approx, np.asarray(bits, dtype=np.uint8), SCALE, layout=layout)
    yuv[:height, :width, 0] = pywt.idwt2((approx, details), "haar")
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


Phase = tuple[int, int]  # where the embedding's block grid starts in a read image: (row, column) pixel, each 0..7


@dataclass(frozen=True, eq=False)
class Reading:
    """One image read at one offset of the block grid: ``size`` 1 at the image's own size, 2 at
    twice it; ``tile`` the TILE x TILE soft bit scores (in [-1, 1], positive reads 1; up to a cyclic
    shift and an inversion); ``strength`` how tightly the read values sit on the quantiser's
    lattice (about 0 for an unmarked grid, 0.5 and more for a marked one)."""

    size: int
    phase: Phase
    tile: np.ndarray
    strength: float


def _luma(rgb: np.ndarray) -> np.ndarray:
    return _yuv(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, :3]))[:, :, 0]


def _block_maxima(luma: np.ndarray, parity: Phase) -> np.ndarray:
    """For every position of the Haar approximation band (twice the mean of 2x2 pixels, paired
    from ``parity``), the largest magnitude in the 4x4 block starting there, its first value left
    out (the package's rule): every grid offset's readings are a strided view of this."""
    part = luma[parity[0] :, parity[1] :]
    h, w = (part.shape[0] // 2) * 2, (part.shape[1] // 2) * 2
    band = np.abs(part[0:h:2, 0:w:2] + part[1:h:2, 0:w:2] + part[0:h:2, 1:w:2] + part[1:h:2, 1:w:2]) / 2.0
    rows, cols = band.shape
    four_cols = np.maximum.reduce([band[:, k : cols - 3 + k] for k in range(4)])
    lower_rows = np.maximum.reduce([four_cols[k : rows - 3 + k] for k in range(1, 4)])
    first_row = np.maximum.reduce([band[: rows - 3, k : cols - 3 + k] for k in range(1, 4)])
    return np.maximum(lower_rows, first_row)


def _phase_values(maxima: np.ndarray, band_offset: Phase) -> np.ndarray:
    """The magnitude the decoder reads in each whole block (rows x cols) at one band offset."""
    return maxima[band_offset[0] :: BLOCK, band_offset[1] :: BLOCK]


def _level(values: np.ndarray, sample: int | None = None) -> tuple[float, float, float]:
    """The gain and offset that put the values on the quantiser's lattice, and how tightly.

    Both bits' lattice points are a quarter step past a multiple of half a step, so the values
    modulo half a step, as angles, cluster for a marked grid and spread evenly for any other; the
    resultant length measures it and its angle gives the offset (modulo half a step: the inverted
    reading goes to the check too). ``sample`` reads every k-th block only (for ranking offsets)."""
    flat = values[values < SATURATED].astype(np.float32)
    if sample is not None and flat.size > sample:
        flat = flat[:: flat.size // sample]
    if flat.size == 0:
        return 1.0, 0.0, 0.0
    angles = np.outer(np.asarray(GAINS, dtype=np.float32), flat) * np.float32(4 * np.pi / SCALE)
    resultant = np.cos(angles).mean(axis=1) + 1j * np.sin(angles).mean(axis=1)
    best = int(np.argmax(np.abs(resultant)))
    offset = SCALE * (0.25 - float(np.angle(resultant[best])) / (4 * np.pi))
    return GAINS[best], offset, float(np.abs(resultant[best]))


def _tile_scores(values: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Per tile position, the mean soft reading of its blocks: -sin of the value's place in the
    step, +1 on a 1's lattice point (three quarters of a step), -1 on a 0's (one quarter)."""
    soft = -np.sin(2 * np.pi * (gain * values.astype(np.float64) + offset) / SCALE)
    read = (values < SATURATED).ravel()
    layout = tile_layout(*values.shape)[read]
    sums = np.bincount(layout, weights=soft.ravel()[read], minlength=TILE * TILE)
    return (sums / np.maximum(np.bincount(layout, minlength=TILE * TILE), 1)).reshape(TILE, TILE)


class _Reader:
    """Reads one image (at one size) at any grid offset, computing each pixel pairing once."""

    def __init__(self, luma: np.ndarray, size: int) -> None:
        self.luma, self.size = luma, size
        self._maxima: dict[Phase, np.ndarray] = {}

    def values(self, phase: Phase) -> np.ndarray:
        parity = (phase[0] % 2, phase[1] % 2)
        if parity not in self._maxima:
            self._maxima[parity] = _block_maxima(self.luma, parity)
        return _phase_values(self._maxima[parity], (phase[0] // 2, phase[1] // 2))

    def read(self, phase: Phase) -> Reading:
        values = self.values(phase)
        gain, offset, strength = _level(values)
        return Reading(self.size, phase, _tile_scores(values, gain, offset), strength)

    def ranked(self, phases: Sequence[Phase], count: int) -> list[Phase]:
        """The ``count`` offsets among ``phases`` whose values sit most tightly on the lattice."""
        usable = [p for p in phases if min(self.values(p).shape) >= TILE]
        strength = {p: _level(self.values(p), RANK_SAMPLE)[2] for p in usable}
        return sorted(usable, key=lambda p: -strength[p])[:count]


def _scaled(rgb: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    return cv2.resize(rgb, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC)


def _readings(rgb: np.ndarray, hint: Reading | None = None) -> Iterator[Reading]:
    """The readings of one image, lazily, in the order they are worth trying: the offset that
    decoded the previous frame of the same video (``hint``), the image's own grid (an uncropped
    copy), the ``PHASES_TRIED`` strongest other offsets; then the same at twice the size (a
    half-size copy, read near the size it was marked at; even offsets only: a crop of the
    half-size copy moves the full-size grid by an even number of pixels)."""
    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, :3])
    sizes = [1, 2] if can_watermark(rgb.shape[1], rgb.shape[0]) else [2]
    for size in sizes:
        reader = _Reader(_luma(rgb if size == 1 else _scaled(rgb, size)), size)
        tried: list[Phase] = []
        for phase in ([hint.phase] if hint is not None and hint.size == size else []) + [(0, 0)]:
            if phase not in tried and min(reader.values(phase).shape) >= TILE:
                tried.append(phase)
                yield reader.read(phase)
        step = 1 if size == 1 else 2
        phases = [(r, c) for r in range(0, GRID, step) for c in range(0, GRID, step) if (r, c) not in tried]
        for phase in reader.ranked(phases, PHASES_TRIED):
            yield reader.read(phase)


def _decode_one(rgb: np.ndarray, hint: Reading | None = None) -> tuple[str | None, list[Reading]]:
    """The id in one image (or None) and the readings tried, the one that carried it last."""
    tried: list[Reading] = []
    for reading in _readings(rgb, hint):
        tried.append(reading)
        found = _id_of_tile(reading.tile)
        if found is not None:
            return found, tried
    return None, tried


def decode_image(rgb: np.ndarray) -> str | None:
    """The watermark id in one RGB image, or None when none is found (at most
    ``MAX_TRIES_PER_IMAGE`` check evaluations)."""
    return _decode_one(rgb)[0]


def _place(reading: Reading) -> tuple[int, Phase]:
    return reading.size, reading.phase


def _vote(frames: list[list[Reading]]) -> str | None:
    """The id in the frames' readings taken together (one video's frames share their crop): at the
    own grid and at the offset most often strongest, the frames' readings there, each turned to
    agree in sign with the first, averaged. ``VOTE_READINGS`` readings at most."""
    strongest = Counter(_place(max(tried, key=lambda r: r.strength)) for tried in frames if tried)
    places = list(dict.fromkeys([(1, (0, 0)), *(place for place, _ in strongest.most_common(1))]))
    for size, phase in places[:VOTE_READINGS]:
        tiles = [r.tile for tried in frames for r in tried if _place(r) == (size, phase)]
        if len(tiles) < 2:
            continue
        aligned = [t if float(np.sum(t * tiles[0])) >= 0 else -t for t in tiles]
        found = _id_of_tile(np.mean(aligned, axis=0))
        if found is not None:
            return found
    return None


def decode_frames(frames: Sequence[np.ndarray] | np.ndarray, max_frames: int = 16) -> Counter[str]:
    """Watermark ids found in up to ``max_frames`` evenly spaced frames, with how many frames carry
    each (a story MP4 holds one id per shot). Each frame is read first at the grid offset that
    decoded the frame before it. When no single frame decodes, the frames' readings are voted on
    together, which recovers a shot whose frames were each degraded a little."""
    count = len(frames)
    found: Counter[str] = Counter()
    if count == 0:
        return found
    picks = sorted({int(round(i)) for i in np.linspace(0, count - 1, num=min(max_frames, count))})
    undecoded: list[list[Reading]] = []
    hint = None
    for i in picks:
        wid, tried = _decode_one(frames[i], hint)
        if wid is not None:
            found[wid] += 1
            hint = tried[-1]
        else:
            undecoded.append(tried)
    if not found:
        voted = _vote(undecoded)
        if voted is not None:
            found[voted] = len(undecoded)
    return found
