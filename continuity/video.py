"""MP4 in and out (PyAV), story concatenation and contact sheets.

H.264 in yuv420p is what every player opens; yuv420p halves chroma resolution, so both sides must
be even: odd frames are padded by one replicated edge pixel rather than cropped, so no content is
lost. Where the FFmpeg build has no libx264 the MPEG-4 Part 2 encoder (always built in) is used.
Files are written to a temporary name and moved into place, so a crash never leaves a half MP4
that a resumed run would take as done.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from memstore.errors import InvalidInputError, MissingExtraError
from memstore.files import publish

PREFERRED_CODECS = ("libx264", "h264", "mpeg4")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise MissingExtraError(
            "'av' (PyAV) is not installed; install the extra: pip install 'continuity[video]'"
        ) from None
    return av


def available_codec(preferred: str | None = None) -> str:
    """The first encoder this FFmpeg build has, from ``preferred`` then H.264 then MPEG-4."""
    av = _av()
    for name in ((preferred,) if preferred else ()) + PREFERRED_CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # UnknownCodecError, or a decoder-only build of that codec
            continue
    raise InvalidInputError(
        f"no video encoder found among {', '.join(PREFERRED_CODECS)}; install an FFmpeg build with one"
    )


def _check_frame(frame: Any, i: int) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InvalidInputError(f"frame {i}: expected H x W x 3 uint8, got shape {arr.shape} dtype {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InvalidInputError(f"frame {i}: {arr.shape[1]}x{arr.shape[0]} is too small to encode")
    return arr


def _even(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _rate(fps: float) -> Fraction:
    if not fps or fps <= 0 or fps > 1000:
        raise InvalidInputError(f"fps must be in (0, 1000], got {fps}")
    return Fraction(fps).limit_denominator(1001)


class _Writer:
    """An open MP4 being written; frames must all have the size of the first one."""

    def __init__(self, path: Path, fps: float, codec: str | None, quality: int) -> None:
        self.av = _av()
        self.path = path
        self.rate = _rate(fps)
        self.codec = available_codec(codec)
        self.quality = quality
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.container = self.av.open(str(self.tmp), mode="w", format="mp4")
        self.stream: Any = None
        self.size: tuple[int, int] | None = None
        self.count = 0

    def _open_stream(self, w: int, h: int) -> None:
        stream = self.container.add_stream(self.codec, rate=self.rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if self.codec in ("libx264", "h264"):
            stream.options = {"crf": str(self.quality), "preset": "veryfast"}
        else:  # mpeg4 has no CRF; a fixed quantiser gives comparable quality
            stream.options = {"qscale": "3"}
            stream.codec_context.qmax = 5
        self.stream, self.size = stream, (w, h)

    def write(self, frame: np.ndarray) -> None:
        arr = _even(_check_frame(frame, self.count))
        h, w = arr.shape[:2]
        if self.stream is None:
            self._open_stream(w, h)
        elif (w, h) != self.size:
            raise InvalidInputError(
                f"frame {self.count}: size {w}x{h} differs from the first frame's {self.size[0]}x{self.size[1]}"
            )
        vf = self.av.VideoFrame.from_ndarray(arr, format="rgb24")
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> Path:
        try:
            if self.stream is None:
                raise InvalidInputError("no frames to write; a video needs at least one frame")
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
            publish(self.tmp, self.path)
            return self.path
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def write_mp4(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = 16.0,
    codec: str | None = None,
    quality: int = 20,
) -> Path:
    """Write T x H x W x 3 uint8 frames to an MP4 (H.264 yuv420p, else MPEG-4); returns the path.
    ``quality`` is x264's CRF (lower is better; 18-23 is visually good)."""
    writer = _Writer(Path(path), fps, codec, quality)
    try:
        for frame in frames:
            writer.write(frame)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def read_frames(path: str | os.PathLike[str], max_frames: int | None = None) -> np.ndarray:
    """Decode an MP4 to T x H x W x 3 uint8 RGB."""
    av = _av()
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"video {str(p)!r} does not exist")
    out = []
    try:
        with av.open(str(p)) as container:
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(out) >= max_frames:
                    break
    except av.FFmpegError as exc:
        raise InvalidInputError(f"video {p.name!r} cannot be decoded: {exc}") from None
    if not out:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(out)


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Frames, size, rate and codec of an MP4 (frames counted by decoding: containers may lie)."""
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate or stream.base_rate or 0),
            "codec": stream.codec_context.name,
        }
        info["frames"] = sum(1 for _ in container.decode(video=0))
    return info


def _fit(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    return np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))


def concat_mp4(
    out: str | os.PathLike[str],
    shots: Sequence[str | os.PathLike[str] | np.ndarray],
    fps: float = 16.0,
    size: tuple[int, int] | None = None,
    codec: str | None = None,
    quality: int = 20,
) -> Path:
    """Join shots (MP4 paths or frame arrays) into one story MP4, resizing every frame to ``size``
    (width, height; default: the first shot's size, made even)."""
    if not shots:
        raise InvalidInputError("no shots to concatenate")
    av = _av()
    writer = _Writer(Path(out), fps, codec, quality)
    target = None if size is None else (int(size[0]) + int(size[0]) % 2, int(size[1]) + int(size[1]) % 2)

    def frames_of(shot: Any) -> Iterable[np.ndarray]:
        if isinstance(shot, np.ndarray):
            yield from shot
            return
        # decode lazily: a story may be far larger than memory
        with av.open(str(shot)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")

    try:
        for i, shot in enumerate(shots):
            if not isinstance(shot, np.ndarray) and not Path(shot).is_file():
                raise InvalidInputError(f"shot {i}: video {str(shot)!r} does not exist")
            for frame in frames_of(shot):
                frame = _check_frame(frame, writer.count)
                if target is None:
                    h, w = frame.shape[:2]
                    target = (w + w % 2, h + h % 2)
                writer.write(_fit(frame, target))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def contact_sheet(
    images: Sequence[np.ndarray | Image.Image],
    cols: int = 4,
    thumb: int | tuple[int, int] = 160,
    labels: Sequence[str] | None = None,
    gap: int = 4,
    background: tuple[int, int, int] = (24, 24, 24),
) -> Image.Image:
    """A grid of thumbnails (aspect kept, centred in ``thumb`` cells), optionally captioned."""
    if cols < 1:
        raise InvalidInputError(f"cols must be at least 1, got {cols}")
    tw, th = (thumb, thumb) if isinstance(thumb, int) else (int(thumb[0]), int(thumb[1]))
    n = len(images)
    rows = max(1, -(-n // cols))
    label_h = 14 if labels else 0
    cell_w, cell_h = tw + gap, th + label_h + gap
    sheet = Image.new("RGB", (gap + min(max(n, 1), cols) * cell_w, gap + rows * cell_h), background)
    draw = ImageDraw.Draw(sheet)
    for i, img in enumerate(images):
        pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
        pil = pil.convert("RGB")
        pil.thumbnail((tw, th))
        x0 = gap + (i % cols) * cell_w
        y0 = gap + (i // cols) * cell_h
        sheet.paste(pil, (x0 + (tw - pil.width) // 2, y0 + (th - pil.height) // 2))
        if labels and i < len(labels):
            draw.text((x0 + 2, y0 + th + 1), str(labels[i])[: max(1, tw // 6)], fill=(220, 220, 220))
    return sheet


__all__ = ["available_codec", "concat_mp4", "contact_sheet", "probe", "read_frames", "write_mp4"]
