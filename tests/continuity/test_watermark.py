"""The invisible watermark: the package's method (vectorised), ids with a check, survival of the
transforms published media goes through."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from continuity.provenance import watermark as wm
from continuity.provenance.survival import survival_rates
from memstore.errors import InvalidInputError

WID = "1f0c9a2b"


def _frames(photos, size=(640, 360)) -> np.ndarray:
    """Real photos at a video size, and drawn (animatic-like) frames."""
    import cv2

    from continuity.drawn import forest_clearing, harbor_at_dusk

    out = [cv2.resize(np.ascontiguousarray(p[:, :, :3]), size, interpolation=cv2.INTER_AREA) for p in photos.values()]
    out += [np.asarray(draw(size).convert("RGB")) for draw in (forest_clearing, harbor_at_dusk)]
    return np.stack([o if o.ndim == 3 else np.repeat(o[:, :, None], 3, axis=2) for o in out])


def test_vectorised_band_matches_the_package():
    """embed_band / read_band are EmbedMaxDct.encode_frame / decode_frame of invisible-watermark."""
    assert importlib.util.find_spec("imwatermark") is not None
    rng = np.random.default_rng(0)
    band = rng.uniform(0, 400, size=(64, 96))
    bits = rng.integers(0, 2, size=48).astype(np.uint8)
    package = wm._max_dct()(list(bits), wmLen=48, scales=[40, 0, 0])
    theirs, ours = band.copy(), band.copy()
    package.encode_frame(theirs, 40)
    wm.embed_band(ours, bits, 40, keep_strongest=False)
    np.testing.assert_allclose(ours, theirs)
    scores = package.decode_frame(theirs, 40, [[] for _ in range(48)])
    ones, count = wm.read_band(theirs, 48, 40)
    np.testing.assert_allclose(ones / count, [np.mean(s) for s in scores])
    marked = band.copy()
    wm.embed_band(marked, bits, 40)  # the runner-up rule: the package's decoder still reads every bit
    read = np.array([np.mean(s) for s in package.decode_frame(marked, 40, [[] for _ in range(48)])]) > 0.5
    assert (read == bits.astype(bool)).all()


def test_ids_round_trip_and_unmarked_frames_read_nothing(photos):
    frames = _frames({"astronaut": photos["astronaut"]})
    marked = wm.embed_frames(frames, WID)
    assert wm.decode_image(marked[0]) == WID
    assert wm.decode_frames(marked) == {WID: len(marked)}
    assert wm.decode_image(frames[0]) is None  # the check rejects what an unmarked frame reads
    assert wm.decode_image(np.full((360, 640, 3), 128, np.uint8)) is None
    assert wm.watermark_id("default", "s", 3, "h") == wm.watermark_id("default", "s", 3, "h")
    assert wm.watermark_id("default", "s", 3, "h") != wm.watermark_id("default", "s", 4, "h")


def test_bad_input_is_refused():
    with pytest.raises(InvalidInputError, match="8 hex digits"):
        wm.clean_watermark_id("not-an-id")
    with pytest.raises(InvalidInputError, match="too small"):
        wm.embed_frames(np.zeros((1, 96, 160, 3), np.uint8), WID)
    with pytest.raises(InvalidInputError, match="uint8"):
        wm.embed_frames(np.zeros((1, 360, 640, 3), np.float32), WID)


@pytest.mark.slow
def test_survival_of_reencode_jpeg_and_half_size(photos):
    """Rates over real photos and drawn frames (the full figures, crop included, are in
    benchmarks/results/provenance.json)."""
    rates = survival_rates(_frames(photos), WID, ["none", "mp4_reencode", "jpeg_75", "half_size"])
    print(rates)
    assert rates["none"] == 1.0
    assert rates["jpeg_75"] >= 0.9
    assert rates["mp4_reencode"] >= 0.75  # a second MP4 generation; a shot's frames also vote together
    assert rates["half_size"] >= 0.75
