"""Failures of the machine, not of the input, end in one line too: a read-only store (where
reading, query included, still works), a full disk, export paths that are folders or foreign
files, unreadable description files, an unreachable object store, MemoryError and a failing
subprocess. Each exits non-zero and leaves the store as it was."""

from __future__ import annotations

import errno
import subprocess
import zipfile

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from continuity.cli import app
from continuity.cli.common import handle_errors
from memstore.errors import DiskFullError, ReadOnlyStoreError, UnreachableStoreError
from memstore.store import Store
from tests.memstore.test_library import snapshot

runner = CliRunner()


def one_line_failure(*args: str, code: int = 1) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture
def db(tmp_path, photos):
    path = tmp_path / "db"
    store = Store.init(path)
    store.library().register("Aria", "character", images=[photos["astronaut"]], description="a red-haired knight")
    return path


def _read_only(monkeypatch):
    """What a read-only file system does to the store: opening the write lock (and any file
    for writing) fails with EROFS. (chmod cannot be used: tests may run as root.)"""
    import memstore.store as store_module

    def refuse(path, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wa+x"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store_module, "open", refuse, raising=False)


def test_query_works_on_a_read_only_store(db, monkeypatch):
    _read_only(monkeypatch)
    lib = Store.open(db).library()
    hits = lib.text_search("red-haired knight")  # no FTS index exists and none can be built
    assert [h for h, _ in hits] == [lib.get("Aria").id]
    result = runner.invoke(app, ["query", "Aria, the red-haired knight, rides", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert "Aria" in result.output


def test_writing_a_read_only_store_is_one_line(db, monkeypatch):
    before = snapshot(Store.open(db))
    _read_only(monkeypatch)
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        Store.open(db).library().register("Bram", "character")
    line = one_line_failure("register", "Bram", "--kind", "character", "--db", str(db))
    assert "read-only" in line
    monkeypatch.undo()
    assert snapshot(Store.open(db)) == before


def test_disk_full_is_a_store_error(db, monkeypatch):
    store = Store.open(db)

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="disk full"):
        store.retry(full)
    with pytest.raises(DiskFullError):  # how lance reports it: the OS error only in the text
        store.retry(lambda: (_ for _ in ()).throw(OSError("LanceError(IO): No space left on device (os error 28)")))

    from memstore.library import Library

    def no_space(self, prepared):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Library, "commit", no_space)
    assert "disk full" in one_line_failure("register", "Bram", "--kind", "prop", "--db", str(db))


def test_export_to_a_folder_or_a_foreign_file_is_refused(db, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    assert "is a folder" in one_line_failure("export", "default", str(folder), "--db", str(db))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert "--force" in one_line_failure("export", "default", str(notes), "--db", str(db))
    assert notes.read_text() == "my notes"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "cannot create the folder" in one_line_failure("export", "default", str(blocker / "a.zip"), "--db", str(db))
    # under a missing parent: made; an earlier archive: replaced; a foreign file with --force: replaced
    fresh = tmp_path / "new" / "dir" / "lib.continuity"
    assert runner.invoke(app, ["export", "default", str(fresh), "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["export", "default", str(fresh), "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["export", "default", str(notes), "--force", "--db", str(db)]).exit_code == 0
    assert zipfile.is_zipfile(notes)


@pytest.mark.parametrize("bad", ["latin-1", "folder"])
def test_import_folder_with_a_bad_description_is_one_line(tmp_path, bad):
    root = tmp_path / "entities"
    (root / "Mara").mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(root / "Mara" / "a.png")
    about = root / "Mara" / "description.txt"
    if bad == "folder":
        about.mkdir()
    else:
        about.write_bytes("caf\xe9 au lait".encode("latin-1"))
    db = tmp_path / "db"
    Store.init(db)
    before = snapshot(Store.open(db))
    line = one_line_failure("import-folder", str(root), "--db", str(db))
    assert "description.txt" in line
    assert snapshot(Store.open(db)) == before


def test_unreachable_object_store_is_one_line(monkeypatch):
    # a closed port on this machine: nothing outside it is ever contacted
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("CONTINUITY_STORAGE_OPTIONS", '{"client_max_retries": "0", "connect_timeout": "1s"}')
    with pytest.raises(UnreachableStoreError, match="s3://bucket/db"):
        Store.open("s3://bucket/db")
    assert "s3://bucket/db" in one_line_failure("list", "--db", "s3://bucket/db")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (MemoryError(), "out of memory"),
        (subprocess.CalledProcessError(3, ["gs", "-q", "x.eps"]), "'gs -q x.eps' failed with exit code 3"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/x"), "Is a directory: /tmp/x"),
    ],
)
def test_handle_errors_maps_machine_failures_to_one_line(error, expected):
    @handle_errors
    def command() -> None:
        raise error

    probe = typer.Typer()
    probe.command()(command)
    result = runner.invoke(probe, [])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
