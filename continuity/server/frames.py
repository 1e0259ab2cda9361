"""A rendered shot as uploaded: one MP4, or several still frames (PNG, JPEG, ...), turned into a
T x H x W x 3 uint8 array under the same limits as every upload: the per-upload byte limit while
it is read, and the request's pixel budget before anything is decoded (an MP4's frames are
counted against it as they decode, so a small file of many frames cannot fill the memory)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from fastapi import UploadFile

from memstore.errors import ImageError, InvalidInputError
from memstore.images import MAX_BATCH_PIXELS, MAX_PIXELS, PixelBudgetError

from .limits import load_uploads

CHUNK = 1 << 20
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v")


def frames_from_images(uploads: list[UploadFile], limit: int) -> np.ndarray:
    """Still frames in upload order, all of one size (checked, size and budget first, by :func:`load_uploads`)."""
    encoded = load_uploads(uploads, limit)
    sizes = {(e.width, e.height) for e in encoded}
    if len(sizes) > 1:
        raise ImageError(f"the frames of one shot must share one size, got {sorted(sizes)}; resize them alike")
    return np.stack([np.asarray(e.to_pil().convert("RGB")) for e in encoded])


def spool_video(upload: UploadFile, limit: int, folder: str) -> Path:
    """The uploaded video copied into ``folder`` in chunks, refused past ``limit`` bytes."""
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InvalidInputError(
            f"video {str(upload.filename)[:80]!r} is not an MP4; send an .mp4 as 'video' or still frames as 'frames'"
        )
    path = Path(folder) / f"upload{suffix}"
    size = 0
    with open(path, "wb") as out:
        while chunk := upload.file.read(CHUNK):
            size += len(chunk)
            if size > limit:
                from .errors import UploadTooLargeError

                raise UploadTooLargeError(
                    f"video {upload.filename!r} is over the {limit}-byte upload limit; send a shorter or smaller one"
                )
            out.write(chunk)
    return path


def decode_video(path: Path, name: str, budget: int = MAX_BATCH_PIXELS) -> tuple[np.ndarray, float]:
    """Frames and frame rate of a video, refused by its frame size before decoding and by the
    pixel budget as it decodes."""
    from ..video import _av  # the video extra's import, with the error that names the extra

    av = _av()
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageError(f"video {name!r} has no video stream; send an MP4 with frames")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > MAX_PIXELS:
                raise ImageError(f"video {name!r}: {width}x{height} frames are over the {MAX_PIXELS}-pixel limit")
            fps = float(stream.average_rate or stream.base_rate or 0) or 0.0
            most = max(1, budget // max(1, width * height))
            for frame in container.decode(video=0):
                if len(frames) >= most:
                    raise PixelBudgetError(
                        f"video {name!r} has more than {most} frames of {width}x{height}, over the"
                        f" {budget}-pixel budget of a request; send a shorter shot or fewer frames"
                    )
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise ImageError(f"video {name!r} cannot be decoded ({type(exc).__name__}); send a complete MP4") from None
    if not frames:
        raise ImageError(f"video {name!r} has no frames; send an MP4 with at least one")
    return np.stack(frames), fps


def uploaded_frames(
    video: UploadFile | None, frames: list[UploadFile] | None, limit: int
) -> tuple[np.ndarray, float | None]:
    """The shot's frames from exactly one of the two kinds of upload; the MP4's own frame rate
    (None for still frames: the plan's applies)."""
    stills = [f for f in (frames or []) if f is not None]
    if (video is None) == (not stills):
        got = "both" if video is not None else "neither"
        raise InvalidInputError(f"send either one MP4 as 'video' or still images as 'frames', got {got}")
    if video is None:
        return frames_from_images(stills, limit), None
    with tempfile.TemporaryDirectory(prefix="continuity-commit-") as folder:
        array, fps = decode_video(spool_video(video, limit, folder), video.filename or "video")
    return array, fps or None
