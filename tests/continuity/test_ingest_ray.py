"""Batch ingest on a real local Ray cluster (one per module, 2 CPUs, one embedder worker).

What it must keep of import-folder: the same references and vectors, the store's image checks, and
all-or-nothing per entity; what it adds: a bad image fails only its entity, and a re-run after a
job that died skips what landed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from continuity.cli import app
from continuity.ingest import ingest_folder
from memstore.store import Store

pytest.importorskip("dlib")  # the face embedder's backend: face vectors and boxes must survive the trip
ray = pytest.importorskip("ray")

EMBEDDERS = ["color-histogram", "dlib"]
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_cluster():
    """One small local cluster for the module: ingest finds it joined and leaves it running."""
    ray.init(
        num_cpus=2,
        object_store_memory=128 * 1024 * 1024,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cast(tmp_path_factory) -> Path:
    """Aria (a face, PNG and JPEG), Bram and Cleo (no face), Dara (one good image, one that is not an image)."""
    from skimage import data

    root = tmp_path_factory.mktemp("ingest") / "cast"
    photos = {"Aria": data.astronaut(), "Bram": data.rocket(), "Cleo": data.coffee(), "Dara": data.chelsea()}
    for name, arr in photos.items():
        (root / name).mkdir(parents=True)
        small = Image.fromarray(arr).resize((arr.shape[1] // 2, arr.shape[0] // 2))
        small.save(root / name / "1.png")
    flipped = Image.fromarray(photos["Aria"][:, ::-1]).resize((256, 256))
    flipped.save(root / "Aria" / "2.jpg", quality=90)
    (root / "Aria" / "description.txt").write_text("a knight")
    (root / "Dara" / "2.png").write_bytes(b"junk")
    return root


def library(path: Path):
    lib = Store.init(path).library("default")
    lib.configure(embedders=EMBEDDERS)
    return lib


def by_sha(lib, name: str) -> dict:
    return {r.sha256: r for r in lib.references(lib.get(name))}


@pytest.mark.slow
def test_without_an_address_ingest_starts_a_local_cluster_and_stops_it(tmp_path):
    """First in the file, before the module's cluster exists: ingest starts one on loopback and shuts it down."""
    from skimage import data

    assert not ray.is_initialized()
    (tmp_path / "cast" / "Bram").mkdir(parents=True)
    Image.fromarray(data.rocket()).resize((150, 213)).save(tmp_path / "cast" / "Bram" / "1.png")
    lib = library(tmp_path / "db")
    summary = ingest_folder(lib, tmp_path / "cast", workers=1)
    assert [o.name for o in summary.landed] == ["Bram"] and summary.cluster == "local Ray cluster (2 CPUs)"
    assert not ray.is_initialized()  # stopped again
    assert lib.count() == {"entities": 1, "references": 1}


@pytest.mark.slow
def test_good_entities_land_as_import_folder_makes_them_and_a_bad_image_fails_only_its_entity(
    ray_cluster, cast, tmp_path
):
    lib = library(tmp_path / "ray-db")
    summary = ingest_folder(lib, cast, workers=1)

    assert [o.name for o in summary.landed] == ["Aria", "Bram", "Cleo"]
    assert [(o.name, o.status) for o in summary.failed] == [("Dara", "failed")]
    assert "2.png" in summary.failed[0].reason and "not a JPEG" in summary.failed[0].reason
    assert "Dara" not in lib and lib.count() == {"entities": 3, "references": 4}
    assert lib.get("Aria").description == "a knight"
    assert summary.to_json()["failed"] == {"Dara": summary.failed[0].reason} and summary.images_processed == 6

    good = tmp_path / "good"  # import-folder writes nothing when any image is bad: give it the good ones
    for name in ("Aria", "Bram", "Cleo"):
        (good / name).mkdir(parents=True)
        for f in (cast / name).iterdir():
            (good / name / f.name).write_bytes(f.read_bytes())
    serial = library(tmp_path / "serial-db")
    result = runner.invoke(app, ["import-folder", str(good), "--db", str(tmp_path / "serial-db")])
    assert result.exit_code == 0, result.output

    face_column = "dlib_dlib_face_recognition_resnet_model_v1"
    faces = 0
    for name in ("Aria", "Bram", "Cleo"):
        ours, theirs = by_sha(lib, name), by_sha(serial, name)
        assert ours.keys() == theirs.keys()
        for sha, ref in ours.items():
            assert ref.vectors.keys() == theirs[sha].vectors.keys()
            for column, vector in ref.vectors.items():
                np.testing.assert_array_equal(vector, theirs[sha].vectors[column])
            assert ref.face_box == theirs[sha].face_box and ref.quality == theirs[sha].quality
            faces += face_column in ref.vectors
    assert faces >= 1  # the astronaut's face went through the workers and came back with its box


@pytest.mark.slow
def test_a_rerun_after_a_job_that_died_skips_what_landed(ray_cluster, cast, tmp_path):
    lib = library(tmp_path / "db")

    def die_after_first_landing(done: int, total: int) -> None:
        if lib.count()["entities"] >= 1:
            raise KeyboardInterrupt  # the driver killed mid-job: what landed is whole

    with pytest.raises(KeyboardInterrupt):
        ingest_folder(lib, cast, workers=1, progress=die_after_first_landing)
    landed_first = {e.name for e in lib.list()}
    assert 1 <= len(landed_first) < 3
    refs_first = lib.count()["references"]

    summary = ingest_folder(lib, cast, workers=1)
    assert {o.name for o in summary.skipped} == landed_first
    assert {o.name for o in summary.landed} == {"Aria", "Bram", "Cleo"} - landed_first
    assert sorted(e.name for e in lib.list()) == ["Aria", "Bram", "Cleo"]
    assert lib.count()["references"] == 4 and refs_first <= 4  # nothing twice


@pytest.mark.slow
def test_cli_prints_a_summary_and_exits_1_when_an_entity_failed(ray_cluster, cast, tmp_path):
    db = tmp_path / "db"
    library(db)
    result = runner.invoke(app, ["ingest", str(cast), "--db", str(db), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "3 landed, 0 skipped, 1 failed; 6 images" in result.stdout
    assert f"failed Dara: {cast / 'Dara' / '2.png'}: not a JPEG" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/folder"], "is not a folder"),
        (["{cast}", "--kind", "dragon"], "unknown"),
        (["{cast}", "--ray", "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cast, tmp_path, args, message):
    db = tmp_path / "db"
    library(db)
    result = runner.invoke(app, ["ingest", *(a.format(cast=cast) for a in args), "--db", str(db)])
    assert result.exit_code == 1 and message in result.output
    assert result.output.strip().count("\n") == 0
    assert Store.open(db).library("default").count() == {"entities": 0, "references": 0}
