"""The ComfyUI node pack (issue 16): loaded as ComfyUI loads it, declared by ComfyUI's rules, run
with ComfyUI-shaped tensors against a real store with real photos, and its example workflows run
end to end from their API-format JSON."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .comfy import (
    CORE_NODES,
    CORE_TYPES,
    PACK,
    LoadImage,
    call,
    declaration_problems,
    execute,
    is_link,
    validate_prompt,
)
from .conftest import image_tensor

WORKFLOWS = PACK / "example_workflows"
SINKS = {"ContinuityRegisterEntity", "ContinuityAddReferences", "ContinuityWriteBackKeyframes"}
READERS = {"ContinuityOpenLibrary", "ContinuityQueryBlueprints", "ContinuityStoryMemory", "ContinuityAnimaticPreview"}


def versions(handle) -> tuple[int, ...]:
    return handle.versions()


def node_error(pack, fn, *args, **kwargs) -> str:
    """Run a node that must fail; return ComfyUI's view of it (str of the exception), checked to be
    the pack's plain one-line error with the internals' chain cut."""
    error_type = sys.modules[pack.__name__ + ".errors"].ContinuityNodeError
    with pytest.raises(error_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    return message


# --- loading and declarations ------------------------------------------------------------------
def test_importing_the_pack_is_cheap():
    code = (
        f"import sys; sys.path.insert(0, {str(PACK.parents[1])!r}); from tests.integrations.comfy import load_pack; "
        "pack = load_pack('custom_nodes.continuity'); "
        "print(sorted(pack.NODE_CLASS_MAPPINGS)); "
        "print([m for m in ('torch', 'lancedb', 'diffusers', 'pyarrow', 'memstore', 'retrieval') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    names, loaded = out.stdout.strip().splitlines()
    assert "ContinuityQueryBlueprints" in names and loaded == "[]"


def test_without_the_project_the_import_says_how_to_install(tmp_path):
    # -S: no site-packages, so neither continuity nor numpy; the pack must fail on the first line
    code = (
        "import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('custom_nodes.continuity', {init!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)"
    ).format(init=str(PACK / "__init__.py"))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode != 0
    assert "ImportError: continuity is not installed in ComfyUI's Python" in out.stderr.strip().splitlines()[-1]


def test_every_node_follows_comfyui_conventions(pack):
    from memstore.validation import KINDS
    from retrieval.memory import POLICIES

    mappings, titles = pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS
    assert set(titles) == set(mappings) and len(mappings) == 7
    known = CORE_TYPES | {"CONTINUITY_LIBRARY"}
    problems = [p for key, cls in mappings.items() for p in declaration_problems(key, cls, known)]
    assert problems == []
    assert {k for k, c in mappings.items() if getattr(c, "OUTPUT_NODE", False)} == SINKS
    assert {k for k, c in mappings.items() if hasattr(c, "IS_CHANGED")} == READERS
    # the combos are the project's own lists, not copies
    assert mappings["ContinuityRegisterEntity"].INPUT_TYPES()["required"]["kind"][0] == list(KINDS)
    assert mappings["ContinuityStoryMemory"].INPUT_TYPES()["required"]["policy"][0] == list(POLICIES)
    # a node that writes passes the library on, so that readers can be ordered after it
    for key in SINKS:
        assert mappings[key].RETURN_TYPES[0] == "CONTINUITY_LIBRARY"


def test_run_defaults_are_the_widget_defaults(pack):
    """ComfyUI leaves an unset optional input out of the call: the function's default then
    decides, so it must be the default the widget shows."""
    differ = []
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
        assert set(params) - {"self"} == set(declared["required"]) | set(declared.get("optional", {})), key
        for name, spec in declared.get("optional", {}).items():
            default = spec[1].get("default", spec[0][0] if isinstance(spec[0], list) else None)
            if params[name].default != default:
                differ.append(f"{key}.{name}: {params[name].default!r} != {default!r}")
    assert differ == []


def test_the_registry_metadata(pack):
    tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11
    meta = tomllib.loads((PACK / "pyproject.toml").read_text())
    assert {"name", "version", "description", "license"} <= set(meta["project"])
    assert "comfyui" not in meta["project"]["name"].lower()  # the registry's naming rule
    assert {"PublisherId", "DisplayName", "Icon", "includes"} <= set(meta["tool"]["comfy"])
    assert "## Nodes" in (PACK / "README.md").read_text()


# --- the nodes against a real store ---------------------------------------------------------------
def test_open_library_reuses_one_handle(pack, studio, tmp_path, monkeypatch):
    open_library = pack.NODE_CLASS_MAPPINGS["ContinuityOpenLibrary"]
    again, summary = call(open_library, db=studio.uri, library="default")
    assert again is studio and "2 entities" in summary
    monkeypatch.chdir(Path(studio.uri).parent)
    assert call(open_library, db="./db", library="default")[0] is studio  # the same folder named otherwise
    before = open_library.IS_CHANGED(db=studio.uri, library="default")
    assert open_library.IS_CHANGED(db=studio.uri, library="default") == before
    other, _ = call(open_library, db=str(tmp_path / "other"), library="scratch")
    assert other is not studio and (tmp_path / "other").is_dir()


def test_query_gives_aligned_references_and_masks(pack, studio):
    query = pack.NODE_CLASS_MAPPINGS["ContinuityQueryBlueprints"]
    refs, faces, regions, names, reasons = call(
        query,
        library=studio,
        prompt="Aria holds Chelsea the cat.",
        references_per_entity=1,
        size=256,
        width=320,
        height=180,
    )
    lines = names.splitlines()
    assert sorted(lines) == ["Aria", "Chelsea"]
    assert refs.dtype == torch.float32 and tuple(refs.shape) == (2, 256, 256, 3)
    assert 0.0 <= float(refs.min()) and float(refs.max()) <= 1.0 and float(refs.std()) > 0.1
    assert tuple(faces.shape) == (2, 256, 256) and tuple(regions.shape) == (2, 180, 320)
    aria, cat = lines.index("Aria"), lines.index("Chelsea")
    # dlib found the astronaut's face: a box in the upper half of her (square) photo
    face = faces[aria].numpy()
    ys, xs = np.nonzero(face)
    assert 0.02 < face.mean() < 0.3 and ys.mean() < 128
    assert float(faces[cat].min()) == 1.0  # no face on the cat: the whole reference
    # the two characters stand side by side in the frame
    assert float((regions[aria] * regions[cat]).sum()) == 0 and float(regions[aria].sum()) > 0
    assert "name 'Aria' in prompt" in reasons and "Chelsea (character" in reasons


def test_register_again_is_harmless_and_add_references_dedupes(pack, studio, real_photos):
    nodes = pack.NODE_CLASS_MAPPINGS
    register, add = nodes["ContinuityRegisterEntity"], nodes["ContinuityAddReferences"]
    photo = image_tensor(real_photos["astronaut.png"])
    before = versions(studio)
    _, name, count = call(
        register,
        library=studio,
        images=photo,
        name="aria",
        kind="character",
        consent="yes",
        aliases="the astronaut",
        description="a woman in an orange space suit",
    )
    assert (name, count) == ("Aria", 1) and versions(studio) == before  # nothing new: nothing written
    crowd = image_tensor(real_photos["t1.jpg"])
    assert call(add, library=studio, images=crowd, name="the astronaut", era="crowd")[1] == 1
    assert call(add, library=studio, images=crowd, name="Aria", era="crowd")[1] == 0
    assert (
        call(register, library=studio, images=photo, name="Aria", kind="character", description="an astronaut")[2] == 2
    )
    assert studio.library.get("Aria").description == "an astronaut"
    assert studio.library.get("Aria").rights.consent is True  # a field not given is kept


def test_a_story_through_memory_and_write_back(pack, studio, tmp_path):
    nodes = pack.NODE_CLASS_MAPPINGS
    animatic, write, memory = (
        nodes["ContinuityAnimaticPreview"],
        nodes["ContinuityWriteBackKeyframes"],
        nodes["ContinuityStoryMemory"],
    )
    story = "pier"
    empty, _, count = call(memory, library=studio, story=story, shot=1, policy="relevant", budget=10)
    assert count == 0 and tuple(empty.shape) == (1, 64, 64, 3)  # a first shot remembers nothing
    first = "Aria walks onto the pier with Chelsea the cat."
    frames, reasons = call(animatic, library=studio, prompt=first, width=160, height=96, frames=6, seed=1, story=story)
    assert tuple(frames.shape) == (6, 96, 160, 3) and frames.dtype == torch.float32 and "Aria" in reasons
    seen = pack.NODE_CLASS_MAPPINGS["ContinuityQueryBlueprints"].IS_CHANGED(library=studio)
    _, keyframes, shot, summary = call(write, frames=frames, library=studio, story=story, shot=0, prompt=first)
    assert shot == 1 and keyframes.shape[0] >= 1 and "shot 1" in summary
    assert nodes["ContinuityQueryBlueprints"].IS_CHANGED(library=studio) != seen  # the query re-runs
    assert nodes["ContinuityStoryMemory"].IS_CHANGED() != seen  # also when ComfyUI passes no library
    second = "She sits down and Chelsea curls up beside her."
    remembered, why, count = call(
        memory, library=studio, story=story, shot=0, policy="relevant", budget=4, prompt=second
    )
    assert count >= 1 and remembered.shape[0] == count and remembered.shape[1:] == (96, 160, 3)
    assert why.startswith("shot 1")
    # without a prompt: a continuation of the previous shot, same memory
    assert call(memory, library=studio, story=story, shot=2, policy="relevant", budget=4)[2] == count
    # a retake of shot 1 replaces it; the story still has one shot
    out = tmp_path / "out"
    summary = call(
        write, frames=frames.flip(0), library=studio, story=story, shot=1, prompt=first, output_folder=str(out)
    )[3]
    assert [r.shot_index for r in studio.library.shots.records(story)] == [0]
    assert (out / "shots" / "shot_000.mp4").stat().st_size > 0 and "shot_000.mp4" in summary
    assert json.loads((out / "shots" / "shot_000.provenance.json").read_text())["prompt"] == first
    preview, _ = call(
        animatic, library=studio, prompt=second, width=160, height=96, frames=3, seed=2, story=story, cut=False
    )
    assert tuple(preview.shape) == (3, 96, 160, 3)


def test_consent_no_is_refused_unless_overridden(pack, studio, real_photos):
    nodes = pack.NODE_CLASS_MAPPINGS
    call(
        nodes["ContinuityRegisterEntity"],
        library=studio,
        images=image_tensor(real_photos["t1.jpg"]),
        name="Crowd",
        kind="prop",
        description="a group of people",
        consent="no",
    )
    query = nodes["ContinuityQueryBlueprints"]
    before = versions(studio)
    message = node_error(pack, call, query, library=studio, prompt="The Crowd cheers.")
    assert "Crowd" in message and "consent" in message and versions(studio) == before
    assert "Crowd" in call(query, library=studio, prompt="The Crowd cheers.", override_consent="crowd")[3]


@pytest.mark.parametrize(
    ("node", "inputs", "expected"),
    [
        ("ContinuityAddReferences", {"name": "Nobody", "images": "photo"}, "Nobody"),
        ("ContinuityRegisterEntity", {"name": "Mara", "kind": "monster", "images": "photo"}, "monster"),
        ("ContinuityRegisterEntity", {"name": "Mara", "kind": "character", "images": "hwc"}, "B x H x W x 3"),
        ("ContinuityRegisterEntity", {"name": "Mara", "kind": "character", "images": "nan"}, "NaN"),
        ("ContinuityRegisterEntity", {"name": "", "kind": "character", "images": "photo"}, "name"),
        ("ContinuityRegisterEntity", {"name": "Chelsea", "kind": "location", "images": "photo"}, "already registered"),
        (
            "ContinuityRegisterEntity",
            {"name": "Aria", "kind": "character", "images": "photo", "aliases": "Chelsea"},
            "Chelsea",
        ),
        ("ContinuityQueryBlueprints", {"prompt": "   "}, "prompt is empty"),
        ("ContinuityQueryBlueprints", {"prompt": "Aria", "kinds": "monsters"}, "monsters"),
        ("ContinuityQueryBlueprints", {"prompt": "A quiet empty room."}, "no blueprint"),
        ("ContinuityAnimaticPreview", {"prompt": "", "width": 160, "height": 96, "frames": 2, "seed": 0}, "empty"),
        ("ContinuityStoryMemory", {"story": " ", "shot": 0, "policy": "relevant", "budget": 4}, "story is empty"),
        (
            "ContinuityStoryMemory",
            {"story": "pier", "shot": 0, "policy": "latest", "budget": 4, "prompt": "Aria"},
            "latest",
        ),
        (
            "ContinuityWriteBackKeyframes",
            {"frames": "one-channel", "story": "s", "shot": 0, "prompt": "Aria"},
            "B x H x W x 3",
        ),
        ("ContinuityWriteBackKeyframes", {"frames": "photo", "story": "s", "shot": 0, "prompt": ""}, "prompt is empty"),
        ("ContinuityWriteBackKeyframes", {"frames": "nan", "story": "s", "shot": 0, "prompt": "Aria"}, "NaN"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(pack, studio, real_photos, node, inputs, expected):
    photo = image_tensor(real_photos["chelsea.png"][:64, :64])
    tensors = {
        "photo": photo,
        "hwc": photo[0],
        "nan": photo.clone().fill_(float("nan")),
        "one-channel": photo[..., :1],
    }
    given = {k: tensors.get(v, v) if k in ("images", "frames") else v for k, v in inputs.items()}
    studio.library.shots.records("s")  # the shot log exists (its first read creates it)
    before = versions(studio)
    message = node_error(pack, call, pack.NODE_CLASS_MAPPINGS[node], library=studio, **given)
    assert expected in message and versions(studio) == before


def test_an_unexpected_failure_is_one_line_too(pack, caplog):
    query = pack.NODE_CLASS_MAPPINGS["ContinuityQueryBlueprints"]
    message = node_error(pack, call, query, library="not a handle", prompt="Aria")
    assert message.startswith("continuity: unexpected AttributeError") and "console" in message
    assert any(r.exc_info for r in caplog.records)  # the traceback went to the log


# --- the example workflows ----------------------------------------------------------------------
@pytest.fixture
def workflow_nodes(nodes, real_photos):
    LoadImage.files = real_photos
    CORE_NODES["PreviewImage"].shown = []
    return nodes


@pytest.mark.parametrize("name", ["01_register_query_animatic", "02_story_memory_write_back"])
def test_example_workflow_runs_end_to_end(workflow_nodes, tmp_path, name):
    prompt = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    for node in prompt.values():
        if node["class_type"] == "ContinuityOpenLibrary":
            node["inputs"]["db"] = str(tmp_path / "db")
    assert validate_prompt(prompt, workflow_nodes) == []
    outputs = execute(prompt, workflow_nodes)
    shown = CORE_NODES["PreviewImage"].shown
    assert shown and all(t.dtype == torch.float32 and t.ndim == 4 and t.shape[-1] == 3 for t in shown)
    handle = outputs["1"][0]
    if name.startswith("01"):
        assert sorted(outputs["6"][3].splitlines()) == ["Aria", "Chelsea"] and outputs["10"][0].shape[0] == 24
    else:
        assert [r.shot_index for r in handle.library.shots.records("harbor-story")] == [0, 1]
        assert outputs["9"][2] >= 1  # shot 2 remembered shot 1
        again = execute(prompt, workflow_nodes)  # queued again: retakes, same story
        assert [r.shot_index for r in handle.library.shots.records("harbor-story")] == [0, 1]
        assert again["9"][2] == outputs["9"][2]


@pytest.mark.parametrize("name", ["01_register_query_animatic", "02_story_memory_write_back"])
def test_ui_workflow_is_the_api_workflow(workflow_nodes, name):
    """The UI-format file (what ComfyUI saves and its template browser opens) has the API file's
    nodes, links and widget values, in the order the node declarations give."""
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
    assert {str(n["id"]): n["type"] for n in ui["nodes"]} == {k: v["class_type"] for k, v in api.items()}
    by_id = {n["id"]: n for n in ui["nodes"]}
    ui_links = {(str(t), by_id[t]["inputs"][slot]["name"]): [str(o), oslot] for _, o, oslot, t, slot, _ in ui["links"]}
    api_links = {(k, i): v for k, node in api.items() for i, v in node["inputs"].items() if is_link(v)}
    assert ui_links == api_links
    for node in ui["nodes"]:
        declared = workflow_nodes[node["type"]].INPUT_TYPES()
        literal = [
            api[str(node["id"])]["inputs"][i]
            for i in {**declared["required"], **declared.get("optional", {})}
            if not is_link(api[str(node["id"])]["inputs"].get(i))
        ]
        values = [v for v in node["widgets_values"] if v not in ("fixed", "image")]
        assert values == literal, node["type"]
