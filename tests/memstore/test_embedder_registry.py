"""The one embedder table: unknown names, backends that fail to import, and that the table and the
backends' own registrations agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memstore.embedders import (
    BUILTIN_EMBEDDERS,
    EmbedderEntry,
    add_embedder,
    base,
    embedder_class,
    get_embedder,
    list_embedders,
)
from memstore.errors import EmbedderError, MissingExtraError


@pytest.fixture(autouse=True)
def private_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries a test adds or replaces stay in that test."""
    monkeypatch.setattr(base, "_ENTRIES", dict(base._ENTRIES))


def test_listing_names_imports_no_backend():
    code = (
        "import sys; from memstore.embedders import list_embedders; names = list_embedders(); "
        "print(sorted(names)); print(any(m in sys.modules for m in "
        "('memstore.embedders.clip', 'memstore.embedders.face', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, imported = out.stdout.splitlines()
    assert names == str(sorted(e.name for e in BUILTIN_EMBEDDERS)) and imported == "False"


def test_an_unknown_name_says_unknown_and_lists_the_known_ones():
    known = "color-histogram, dlib, insightface, open-clip"
    with pytest.raises(EmbedderError, match=f"unknown embedder 'nope'; known: {known}"):
        get_embedder("nope")


def test_a_backend_whose_package_is_missing_names_it_and_the_extra(monkeypatch: pytest.MonkeyPatch):
    # As if open_clip's module failed at its import line: replace the import, not the installed package.
    add_embedder(EmbedderEntry("open-clip", "memstore.embedders.clip:OpenClipEmbedder", extra="clip"))

    real_import = base.importlib.import_module

    def no_open_clip(name: str, package: str | None = None) -> object:
        if name == "memstore.embedders.clip":
            raise ModuleNotFoundError("No module named 'open_clip'", name="open_clip")
        return real_import(name, package)

    monkeypatch.setattr(base.importlib, "import_module", no_open_clip)
    with pytest.raises(MissingExtraError) as info:
        get_embedder({"type": "open-clip", "model": "ViT-B-32"})
    message = str(info.value)
    assert "unknown" not in message and "\n" not in message
    assert "'open_clip'" in message and message.endswith("pip install 'continuity[clip]'")


def test_a_broken_plugin_module_on_the_path_reports_its_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "continuity_test_broken_embedder.py").write_text("import insightface_is_not_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    add_embedder(EmbedderEntry("test-broken", "continuity_test_broken_embedder:Broken", extra="face"))
    assert "test-broken" in list_embedders()
    expected = r"'insightface_is_not_here'.*pip install 'continuity\[face\]'"
    with pytest.raises(MissingExtraError, match=expected):
        get_embedder("test-broken")


def test_bad_targets_are_refused():
    with pytest.raises(EmbedderError, match="target must be 'module:Class'"):
        add_embedder(EmbedderEntry("test-bad", "memstore.embedders.histogram"))
    add_embedder(EmbedderEntry("test-typo", "memstore.embedders.histogram:ColourHistogram"))
    with pytest.raises(EmbedderError, match="histogram has no 'ColourHistogram'"):
        get_embedder("test-typo")


@pytest.mark.parametrize("entry", BUILTIN_EMBEDDERS, ids=lambda e: e.name)
def test_each_table_entry_is_the_class_its_backend_registers(entry: EmbedderEntry):
    cls = embedder_class(entry.name)
    assert f"{cls.__module__}:{cls.__qualname__}" == entry.target
    assert cls.type_name == entry.name  # the backend's @register_embedder names it as the table does


def test_the_decorator_adds_an_entry_and_keeps_the_extra_of_the_one_it_replaces():
    @base.register_embedder("open-clip")
    class Override(embedder_class("color-histogram")):  # type: ignore[misc, valid-type]
        pass

    entry = base.embedder_entry("open-clip")
    assert entry.target is Override and entry.extra == "clip" and Override.type_name == "open-clip"
    assert isinstance(get_embedder("open-clip"), Override)
