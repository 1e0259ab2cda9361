"""MP4 round trips, concatenation and contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av", reason="PyAV is not installed (extra: video)")

from continuity.video import available_codec, concat_mp4, contact_sheet, probe, read_frames, write_mp4
from memstore.errors import InvalidInputError


def _clip(photo: np.ndarray, n: int, size=(96, 64)) -> np.ndarray:
    base = np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR))
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])


def test_round_trip_h264(tmp_path, photos):
    frames = _clip(photos["astronaut"], 12)
    path = write_mp4(tmp_path / "shots" / "s.mp4", frames, fps=12)
    info = probe(path)
    assert info["frames"] == 12 and (info["width"], info["height"]) == (96, 64)
    assert info["fps"] == pytest.approx(12.0)
    assert info["codec"] == ("h264" if available_codec() in ("libx264", "h264") else "mpeg4")
    back = read_frames(path)
    assert back.shape == (12, 64, 96, 3) and back.dtype == np.uint8
    # lossy, but the picture is the same picture
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12
    assert [p.name for p in (tmp_path / "shots").iterdir()] == ["s.mp4"]  # no temp file left behind


def test_odd_size_is_padded_to_even(tmp_path, photos):
    frames = _clip(photos["chelsea"], 3, size=(75, 51))
    info = probe(write_mp4(tmp_path / "odd.mp4", frames, fps=8))
    assert (info["width"], info["height"], info["frames"]) == (76, 52, 3)


def test_mpeg4_fallback(tmp_path, photos):
    path = write_mp4(tmp_path / "m.mp4", _clip(photos["coffee"], 4), fps=8, codec="mpeg4")
    info = probe(path)
    assert info["codec"] == "mpeg4" and info["frames"] == 4


def test_concat_resizes_to_a_common_size(tmp_path, photos):
    a = write_mp4(tmp_path / "a.mp4", _clip(photos["astronaut"], 5, size=(96, 64)), fps=8)
    b = write_mp4(tmp_path / "b.mp4", _clip(photos["chelsea"], 4, size=(64, 48)), fps=8)
    c = _clip(photos["coffee"], 3, size=(50, 50))
    story = concat_mp4(tmp_path / "story.mp4", [a, b, c], fps=8)
    info = probe(story)
    assert info["frames"] == 12 and (info["width"], info["height"]) == (96, 64)
    frames = read_frames(story)
    # the cat shot sits at frames 5..8: its colours, not the astronaut's
    cat = np.asarray(Image.fromarray(photos["chelsea"]).resize((96, 64))).astype(int)
    assert np.abs(frames[6].astype(int) - cat).mean() < np.abs(frames[0].astype(int) - cat).mean()
    sized = probe(concat_mp4(tmp_path / "s2.mp4", [a, c], fps=8, size=(33, 21)))
    assert (sized["width"], sized["height"], sized["frames"]) == (34, 22, 8)


def test_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(InvalidInputError, match="no frames"):
        write_mp4(tmp_path / "e.mp4", np.zeros((0, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="uint8"):
        write_mp4(tmp_path / "e.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))
    mixed = [np.zeros((8, 8, 3), np.uint8), np.zeros((10, 8, 3), np.uint8)]
    with pytest.raises(InvalidInputError, match="differs from the first"):
        write_mp4(tmp_path / "e.mp4", mixed)
    with pytest.raises(InvalidInputError, match="fps"):
        write_mp4(tmp_path / "e.mp4", mixed[:1], fps=0)
    with pytest.raises(InvalidInputError, match="does not exist"):
        concat_mp4(tmp_path / "e.mp4", [tmp_path / "missing.mp4"])
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet(photos):
    imgs = [
        photos["astronaut"],
        photos["chelsea"],
        Image.fromarray(photos["coffee"]),
        photos["rocket"],
        photos["chelsea"],
    ]
    sheet = contact_sheet(imgs, cols=3, thumb=(80, 60), labels=["a", "b", "c", "d", "e"], gap=4)
    assert sheet.size == (4 + 3 * 84, 4 + 2 * (60 + 14 + 4))
    arr = np.asarray(sheet)
    # second row, first cell holds the rocket, not the background
    assert arr[4 + 78 + 30, 4 + 40].tolist() != [24, 24, 24]
    assert contact_sheet([], cols=4).size[0] > 0
