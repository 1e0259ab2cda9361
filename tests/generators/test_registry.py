"""The one generator table: lookups, plugin entries, import failures, and that every reader agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import generators
from continuity.generator_setup import check_generator, weighted_generators
from generators import registry
from generators.registry import (
    BUILTIN_GENERATORS,
    GeneratorEntry,
    add_generator,
    generator_entry,
    get_generator,
    list_generators,
    register_generator,
)
from memstore.errors import InvalidInputError, MissingExtraError, MissingWeightsError

WEIGHTED = [e for e in BUILTIN_GENERATORS if e.needs_model]


@pytest.fixture(autouse=True)
def private_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries a test adds stay in that test."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))


@pytest.fixture
def broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path whose import fails the way a backend's does when its extra is missing."""
    (tmp_path / "continuity_test_broken_backend.py").write_text(
        "import continuity_test_package_that_is_not_installed\n\nclass Broken:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "continuity_test_broken_backend"


def test_entries_are_looked_up_by_normalised_name_without_importing():
    entry = generator_entry("IP_Adapter")
    assert entry.name == "ip-adapter" and entry.target == "generators.ip_adapter:IPAdapterGenerator"
    assert (entry.adapter, entry.needs_model, entry.extra) == ("required", True, "diffusers")
    assert "h94/IP-Adapter" in entry.hint
    names = list_generators()  # other test modules may have registered plugins of their own
    assert names == sorted(names) and {e.name for e in BUILTIN_GENERATORS} <= set(names)
    with pytest.raises(InvalidInputError, match="unknown generator 'nope'; expected one of: animatic, "):
        generator_entry("nope")


def test_a_backend_that_fails_to_import_names_the_extra_not_unknown(broken_module: str):
    add_generator(GeneratorEntry("test-broken", f"{broken_module}:Broken", extra="diffusers"))
    with pytest.raises(MissingExtraError) as info:
        get_generator("test-broken")
    message = str(info.value)
    assert "unknown" not in message and "\n" not in message
    assert broken_module in message and "continuity_test_package_that_is_not_installed" in message
    assert message.endswith("pip install 'continuity[diffusers]'")


def test_a_weighted_backend_that_fails_to_import_fails_the_cli_check_with_the_extra(broken_module: str, tmp_path: Path):
    add_generator(
        GeneratorEntry(
            "test-broken", f"{broken_module}:Broken", needs_model=True, extra="diffusers", hint="some/weights"
        )
    )
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'continuity[diffusers]'")):
        check_generator("test-broken", model=str(tmp_path))


def test_a_target_missing_from_its_module_says_which(broken_module: str):
    add_generator(GeneratorEntry("test-typo", "generators.mock:MockGeneratr"))
    with pytest.raises(InvalidInputError, match="'generators.mock:MockGeneratr'.*no 'MockGeneratr'"):
        get_generator("test-typo")


def test_plugins_register_with_a_weights_role_that_generator_setup_reads(tmp_path: Path):
    @register_generator("test-weighted", adapter="required", hint="org/test-weights", needs_model=True)
    class Weighted(generators.MockGenerator):
        @classmethod
        def from_pretrained(cls, model: str, adapter: str) -> Weighted:
            return cls()

    assert generator_entry("test_weighted").target is Weighted
    assert "test-weighted" in weighted_generators()
    with pytest.raises(MissingWeightsError, match=re.escape("--model FOLDER (org/test-weights)")):
        check_generator("test-weighted")
    with pytest.raises(MissingWeightsError, match=re.escape("--adapter FOLDER_OR_FILE (org/test-weights)")):
        check_generator("test-weighted", model=str(tmp_path))


def test_a_plugin_overrides_a_builtin_entry_whole():
    @register_generator("prompt")
    class Plain(generators.MockGenerator):
        pass

    entry = generator_entry("prompt")
    assert entry.target is Plain and not entry.needs_model and entry.adapter is None
    assert isinstance(get_generator("prompt"), Plain)
    check_generator("prompt")  # now weightless: no --model asked for


def test_bad_entries_fail_where_they_are_declared():
    with pytest.raises(InvalidInputError, match="must be non-empty"):
        register_generator("  ")
    with pytest.raises(InvalidInputError, match="must load a --model too"):
        register_generator("test-lora", adapter="lora")
    with pytest.raises(InvalidInputError, match="adapter must be one of"):
        add_generator(
            GeneratorEntry(
                "test-role",
                "generators.mock:MockGenerator",
                adapter="maybe",  # type: ignore[arg-type]
                needs_model=True,
            )
        )
    with pytest.raises(InvalidInputError, match="target must be 'module:Class'"):
        add_generator(GeneratorEntry("test-target", "generators.mock"))


@pytest.mark.parametrize("entry", BUILTIN_GENERATORS, ids=lambda e: e.name)
def test_every_builtin_class_is_a_lazy_attribute_of_generators(entry: GeneratorEntry):
    assert entry.class_name in generators.__all__
    assert getattr(generators, str(entry.class_name)) is entry.load()
    assert entry.module is not None and entry.module.startswith("generators.")


def test_the_non_generator_lazy_names_resolve():
    from generators.ip_adapter import HFImageEncoder

    assert generators.HFImageEncoder is HFImageEncoder
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = generators.NoSuchThing


def test_builtin_adapter_modules_declare_no_second_registration():
    root = Path(generators.__file__).parent
    for entry in BUILTIN_GENERATORS:
        source = (root / f"{str(entry.module).rpartition('.')[2]}.py").read_text()
        assert "@register_generator" not in source, f"{entry.module} registers itself besides the table"


def test_generator_setup_uses_each_entrys_weights_role_and_hint(tmp_path: Path):
    assert weighted_generators() == sorted(e.name for e in WEIGHTED)
    for entry in BUILTIN_GENERATORS:
        if not entry.needs_model:
            with pytest.raises(InvalidInputError, match="takes no --model/--adapter"):
                check_generator(entry.name, model=str(tmp_path))
            continue
        with pytest.raises(MissingWeightsError, match=re.escape(f"--model FOLDER ({entry.hint})")):
            check_generator(entry.name)
        if entry.adapter is None:
            with pytest.raises(InvalidInputError, match="takes no --adapter"):
                check_generator(entry.name, model=str(tmp_path), adapter=str(tmp_path))
        elif entry.adapter == "required":
            expected = re.escape(f"--adapter FOLDER_OR_FILE ({entry.hint})")
            with pytest.raises(MissingWeightsError, match=expected):
                check_generator(entry.name, model=str(tmp_path))
        else:  # an optional LoRA: both with and without it pass the cheap checks
            check_generator(entry.name, model=str(tmp_path))
            check_generator(entry.name, model=str(tmp_path), adapter=str(tmp_path))
