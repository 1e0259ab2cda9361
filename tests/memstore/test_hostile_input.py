"""Hostile input, property-based: every call ends in success or a typed ContinuityError, never
another exception, and a call that fails leaves the store exactly as it was (versions, row counts
and content of every table)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from memstore.errors import (
    ContinuityError,
    EmptyImageError,
    EntityNotFoundError,
    ImageError,
    ImageTooLargeError,
)
from memstore.store import Store
from memstore.validation import KINDS, MAX_PROMPT_CHARS, name_key
from tests.conftest import solid

# The benchmark raises the example counts and reads back how many cases ran.
EXAMPLES = int(os.environ.get("CONTINUITY_FUZZ_EXAMPLES", "60"))
CASES = {"count": 0}


def examples(n: int = EXAMPLES) -> settings:
    return settings(max_examples=max(n, 1), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


SETTINGS = examples()


@pytest.fixture(scope="module", autouse=True)
def _count_cases():
    yield
    out = os.environ.get("CONTINUITY_FUZZ_COUNT_FILE")
    if out:
        with open(out, "a") as fh:
            fh.write(f"{CASES['count']}\n")


COLUMN = "color_histogram_rgb8"
INJECTIONS = [
    "x' OR '1'='1",
    "'; DROP TABLE entities; --",
    "Aria' --",
    "' OR library = 'other",
    '" OR ""="',
    "Aria\x00",
    "\x00",
    "a\\' OR 1=1 --",
    "%",
    "_",
    "*",
    "Aria%",
    "ÄRIA",
    "ａｒｉａ",  # full-width: NFKC-equal to "aria"
    "👑 king",
    "\u202eevil",  # right-to-left override
    "\ud800",  # lone surrogate
    "a/b",
    "..",
    " ",
    "x" * 300,
]
hostile_text = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40), st.text(st.characters(), max_size=10))


# --- the store under attack ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    store = Store.init(tmp_path_factory.mktemp("hostile") / "db")
    lib = store.library("default")
    lib.register("Aria", "character", images=[solid((200, 30, 30))], aliases=["the knight"], tags=["hero"])
    lib.register("Castle", "location", images=[solid((30, 200, 30))], tags=["place"])
    store.library("other").register("Secret", "prop", images=[solid((30, 30, 200))], tags=["hero"])
    return store, lib


def snapshot(store: Store) -> dict:
    """Versions, row counts and a digest of the content of every table."""
    out = {}
    for name in ("config", "entities", "references", "tokens"):
        table = store.table(name)
        data = table.to_lance().to_table()
        rows = sorted(json.dumps(r, sort_keys=True, default=repr) for r in data.to_pylist())
        out[name] = (table.version, data.num_rows, hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def attempt(store: Store, fn, *args, **kwargs):
    """Run ``fn``; a ContinuityError must leave the store unchanged. Other exceptions propagate."""
    CASES["count"] += 1
    before = snapshot(store)
    try:
        return fn(*args, **kwargs)
    except ContinuityError as exc:
        assert snapshot(store) == before, f"store changed by a failed call: {exc}"
        assert "\n" not in str(exc).strip(), "error messages are one line"
        return exc


# --- names, aliases, descriptions, tags, rights ------------------------------------------------------
@SETTINGS
@given(
    field=st.sampled_from(["name", "aliases", "description", "tags", "kind", "owner", "license", "attributes", "all"]),
    value=hostile_text,
    extra=st.one_of(st.just("y" * 25_000), st.none(), st.integers(), st.lists(hostile_text, max_size=3), hostile_text),
)
@example(field="owner", value="\ud800", extra=None)
@example(field="license", value="a\x00b", extra=None)
@example(field="description", value="\ud800", extra=None)
@example(field="attributes", value="k", extra="\ud800")
def test_register_hostile_fields(hostile, field, value, extra):
    """One hostile field at a time (the others valid), so that every field's own check is reached."""
    store, lib = hostile
    args = {
        "name": "Fieldy",
        "kind": "prop",
        "aliases": [],
        "description": "",
        "tags": [],
        "rights": {},
        "attributes": {},
    }
    if field in ("name", "kind", "description"):
        args[field] = value if extra is None or isinstance(extra, str) else extra
    elif field in ("aliases", "tags"):
        args[field] = extra if isinstance(extra, list) else [value]
    elif field in ("owner", "license"):
        args["rights"] = {field: value}
    elif field == "attributes":
        args["attributes"] = {value: extra}
    else:
        args.update(name=value, aliases=[value], description=value, tags=[value], rights={"owner": value})
    name, kind = args.pop("name"), args.pop("kind")
    result = attempt(store, lib.register, name, kind, **args)
    if isinstance(result, ContinuityError):
        return
    got = lib.get(name)
    assert got.id == result.id and got.rights == result.rights and got.attributes == result.attributes
    lib.remove(result.id)
    assert lib.find(result.id) is None


@SETTINGS
@given(
    era=hostile_text,
    story=st.one_of(st.none(), hostile_text),
    source=st.sampled_from(["registered", "harvested", "x' OR 1=1"]),
    shot=st.one_of(st.none(), st.integers(-(2**40), 2**40), st.text(max_size=3)),
    frame=st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(), st.text(max_size=3)),
)
def test_add_images_hostile_fields(hostile, era, story, source, shot, frame):
    store, lib = hostile
    data = solid((int(abs(hash((era, story))) % 255), 1, 2))
    result = attempt(
        store, lib.add_images, "Castle", [data], era=era, story=story, source=source, shot=shot, frames=[frame]
    )
    if isinstance(result, ContinuityError):
        return
    ref = lib.reference(result[0].id)
    assert (ref.era, ref.story, ref.shot, ref.frame) == (era, story, shot, frame)
    lib.remove_references([ref.id])


@SETTINGS
@given(query=hostile_text)
@example(query="x' OR '1'='1")
@example(query="'; DROP TABLE entities; --")
@example(query="Secret")
def test_find_and_get_match_only_by_id_name_or_alias(hostile, query):
    store, lib = hostile
    CASES["count"] += 1
    before = snapshot(store)
    try:
        found = lib.find(query)
    except ContinuityError:
        found = None
    if found is not None:
        assert found.library == "default"
        assert found.id == query or name_key(query) in {name_key(n) for n in found.names}
    try:
        lib.get(query)
    except EntityNotFoundError:
        assert found is None
    except ContinuityError:
        pass
    assert snapshot(store) == before
    assert len(store.entities.to_lance().to_table()) == 3  # nothing dropped


@SETTINGS
@given(
    kind=st.one_of(st.none(), st.sampled_from(KINDS), hostile_text),
    tag=st.one_of(st.none(), st.just("hero"), hostile_text),
)
@example(kind="character' OR '1'='1", tag=None)
@example(kind=None, tag="hero') OR true OR array_has(tags, 'x")
def test_list_filters(hostile, kind, tag):
    store, lib = hostile
    CASES["count"] += 1
    before = snapshot(store)
    try:
        listed = lib.list(kind=kind, tag=tag)
    except ContinuityError:
        assert kind not in KINDS + (None,) or tag not in (None, "hero")
        return
    finally:
        assert snapshot(store) == before
    for entity in listed:
        assert entity.library == "default"
        assert kind is None or entity.kind == kind
        assert tag is None or tag in entity.tags
    if kind is None and tag == "hero":
        assert [e.name for e in listed] == ["Aria"]  # not the other library's "Secret"


@SETTINGS
@given(
    era=st.one_of(st.none(), hostile_text),
    source=st.one_of(st.none(), hostile_text),
    story=st.one_of(st.none(), hostile_text),
    ids=st.one_of(st.none(), st.lists(hostile_text, max_size=3)),
)
def test_reference_filters(hostile, era, source, story, ids):
    store, lib = hostile
    CASES["count"] += 1
    before = snapshot(store)
    try:
        refs = lib.references(era=era, source=source, story=story, ids=ids)
    except ContinuityError:
        return
    finally:
        assert snapshot(store) == before
    assert all(r.library == "default" for r in refs)
    assert all(era is None or r.era == era for r in refs)
    assert all(story is None or r.story == story for r in refs)


# --- images -----------------------------------------------------------------------------------------
def _encoded(fmt: str, size=(12, 9)) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    if fmt in ("GIF", "PCX", "ICO", "TGA"):
        img = img.convert("P") if fmt != "TGA" else img
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "TGA", "PCX", "ICO", "PPM"]
VALID = {fmt: _encoded(fmt) for fmt in FORMATS}


@st.composite
def hostile_image(draw) -> bytes:
    how = draw(st.sampled_from(["random", "truncated", "flipped", "spliced"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    data = bytearray(VALID[draw(st.sampled_from(FORMATS))])
    if how == "truncated":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flipped":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
        return bytes(data)
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64)) + bytes(data[cut:])


@examples(EXAMPLES * 5 // 2)
@given(data=hostile_image())
def test_hostile_image_bytes(hostile, data):
    store, lib = hostile
    result = attempt(store, lib.register, "Imagey", "prop", images=[data])
    if isinstance(result, ContinuityError):
        assert isinstance(result, ImageError), result
        return
    ref = lib.references(result)[0]
    assert ref.width * ref.height > 0
    lib.remove(result.id)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat) - 4)
        + idat
        + struct.pack(">I", zlib.crc32(idat))
    )


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 12, 0, 0, 14 + len(info)) + info + b"\x00" * 12


def _gif_header(width: int, height: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0, 0, 0)
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", width, height)
        + b"\x00\x02\x02D\x01\x00;"
    )


def _jpeg_header(width: int, height: int) -> bytes:
    good = VALID["JPEG"]
    sof = good.index(b"\xff\xc0")
    return good[: sof + 5] + struct.pack(">HH", height, width) + good[sof + 9 :]


@pytest.mark.parametrize(
    "data, error",
    [
        (_png_header(100_000, 100_000), ImageTooLargeError),
        (_png_header(2**31 - 1, 2**31 - 1), ImageError),
        (_png_header(0, 0), ImageError),
        (_png_header(1, 0), ImageError),
        (_bmp_header(100_000, 100_000), ImageTooLargeError),
        (_bmp_header(0, 5), ImageError),
        (_gif_header(65_535, 65_535), ImageTooLargeError),
        (_gif_header(0, 0), ImageError),
        (_jpeg_header(65_000, 65_000), ImageTooLargeError),
        (_jpeg_header(0, 10), ImageError),
        (b"", EmptyImageError),
    ],
    ids=[
        "png-100k",
        "png-2^31",
        "png-0x0",
        "png-1x0",
        "bmp-100k",
        "bmp-0",
        "gif-64k",
        "gif-0",
        "jpeg-65k",
        "jpeg-0",
        "empty",
    ],
)
def test_crafted_headers_are_refused_before_decoding(hostile, data, error):
    store, lib = hostile
    result = attempt(store, lib.register, "Bomb", "prop", images=[data])
    assert isinstance(result, error), result


# --- vectors ----------------------------------------------------------------------------------------
bad_numbers = st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1e308, -1e308, 1e-320, 1.0])


@st.composite
def hostile_vectors(draw):
    how = draw(st.sampled_from(["values", "length", "column", "type", "shape", "mapping"]))
    if how == "values":
        vec = draw(st.lists(bad_numbers, min_size=512, max_size=512))
        return {COLUMN: vec}
    if how == "length":
        return {COLUMN: np.ones(draw(st.integers(0, 1030)), np.float32)}
    if how == "column":
        return {draw(hostile_text): np.ones(512, np.float32)}
    if how == "type":
        return {COLUMN: draw(st.sampled_from([["a"] * 512, "x" * 512, None, {"a": 1}, [[1.0, 2.0], [3.0]], object()]))}
    if how == "shape":
        return {COLUMN: np.ones(draw(st.sampled_from([(1, 1, 512), (2, 512), (512, 1), (0, 512)])), np.float32)}
    return draw(st.sampled_from([[1.0] * 512, "vector", 3, [(COLUMN, [1.0] * 512)]]))


@SETTINGS
@given(vectors=hostile_vectors())
def test_hostile_vectors_on_register(hostile, vectors):
    store, lib = hostile
    result = attempt(store, lib.register, "Vecky", "prop", images=[solid((9, 99, 199))], vectors=vectors)
    if isinstance(result, ContinuityError):
        return
    vec = lib.references(result)[0].vectors[COLUMN]
    assert np.isfinite(vec).all() and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-3
    lib.remove(result.id)


@SETTINGS
@given(vectors=hostile_vectors(), k=st.integers(-2, 5))
def test_hostile_search_queries(hostile, vectors, k):
    store, lib = hostile
    query = vectors.get(COLUMN) if isinstance(vectors, dict) else vectors
    column = next(iter(vectors)) if isinstance(vectors, dict) else COLUMN
    CASES["count"] += 1
    before = snapshot(store)
    try:
        hits = lib.search(query, column, k=k)
    except ContinuityError:
        hits = []
    assert all(ref.library == "default" for _, ref in hits)
    assert snapshot(store) == before


# --- archives ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archive_bytes(hostile, tmp_path_factory):
    _, lib = hostile
    path = tmp_path_factory.mktemp("archive") / "lib.zip"
    lib.export(path)
    return path.read_bytes()


@examples(EXAMPLES * 2 // 3)
@given(data=st.data())
def test_hostile_archives_are_refused_whole(hostile, archive_bytes, tmp_path_factory, data):
    from memstore.archive import import_library

    raw = bytearray(archive_bytes)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("bad") / "bad.zip"
    path.write_bytes(bytes(raw[: data.draw(st.integers(1, len(raw)))]))
    target = Store.init(tmp_path_factory.mktemp("target") / "db")
    result = attempt(target, import_library, target, path, "imported")
    if not isinstance(result, ContinuityError):
        assert target.library("imported").count()["entities"] <= 2


# --- story scripts ----------------------------------------------------------------------------------
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
SHOT_KEYS = ["index", "prompt", "cut", "cast", "location", "duration", "seed"]


@st.composite
def hostile_script(draw):
    """A native script with random fields dropped, retyped or added; or random JSON."""
    if draw(st.booleans()):
        return draw(json_values)
    shot = {"index": 1, "prompt": "Aria rides", "cast": ["Aria"]}
    for key in draw(st.lists(st.sampled_from(SHOT_KEYS), max_size=3)):
        if draw(st.booleans()):
            shot.pop(key, None)
        else:
            shot[key] = draw(json_values)
    script = {"id": "s", "cast": [{"name": "Aria"}], "scenes": [{"index": 1, "shots": [shot]}]}
    for key in draw(st.lists(st.sampled_from(["id", "cast", "scenes", "title", "bogus"]), max_size=2)):
        script[key] = draw(json_values)
    return script


@examples(EXAMPLES * 4 // 3)
@given(script=hostile_script(), as_yaml=st.booleans())
def test_hostile_story_scripts(tmp_path_factory, script, as_yaml):
    from continuity import story
    from memstore.errors import ScriptError

    CASES["count"] += 1
    path = tmp_path_factory.mktemp("story") / "s.yaml"
    try:
        text = json.dumps(script)
    except (ValueError, UnicodeEncodeError):
        assume(False)
    if as_yaml:
        import yaml

        text = yaml.safe_dump(script)
    try:
        path.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:
        assume(False)
    try:
        loaded = story.load_story(path)
    except ScriptError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert loaded.num_shots >= 1


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe\x00garbage",  # not UTF-8
        b"scenes: [",
        b"!!python/object/apply:os.system ['echo pwned']",
        b"[]",
        b"id: s\nscenes: []\n",
        b"id: s\nscenes:\n  - index: 1\n    shots:\n      - index: 1\n        prompt: '"
        + b"x" * (MAX_PROMPT_CHARS + 1)
        + b"'\n",
        b"id: s\nscenes:\n  - index: 1\n    shots:\n      - {index: 0, prompt: p}\n",
        b"&a [*a]",  # a self-referencing YAML anchor
        b"a: &a ['lol','lol']\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
    ],
    ids=[
        "empty",
        "not-utf8",
        "bad-yaml",
        "python-tag",
        "list",
        "no-shots",
        "huge-prompt",
        "shot-0",
        "recursive-anchor",
        "billion-laughs",
    ],
)
def test_malformed_story_files(tmp_path, content):
    from continuity import story
    from memstore.errors import ScriptError

    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    with pytest.raises(ScriptError):
        story.load_story(path)


def test_huge_story_file_is_refused(tmp_path):
    from continuity import story
    from memstore.errors import ScriptError

    path = tmp_path / "s.json"
    with path.open("wb") as fh:
        fh.write(b'{"id": "s", "scenes": [' + b'{"index": 1, "shots": []},' * 500_000 + b"{}]}")
    with pytest.raises(ScriptError, match="bytes"):
        story.load_story(path)


# --- the command line -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["list", "--kind", "character' OR '1'='1"],
        ["list", "--tag", "'; DROP TABLE entities; --"],
        ["show", "x' OR '1'='1"],
        ["show", "'; DROP TABLE entities; --"],
        ["remove", "x' OR '1'='1"],
        ["register", "a/b", "--kind", "prop"],
        ["register", "ok", "--kind", "prop' OR 1=1"],
        ["list", "--library", "../other"],
    ],
)
def test_cli_refuses_hostile_arguments_in_one_line(hostile, args):
    from typer.testing import CliRunner

    from continuity.cli import app

    store, _ = hostile
    before = snapshot(store)
    result = CliRunner().invoke(app, [*args, "--db", store.uri])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert snapshot(store) == before
