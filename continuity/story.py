"""Story scripts: one model for three formats.

A story is scenes of shots. Native scripts (YAML or JSON) follow :class:`StoryScript` directly;
two benchmark formats are read into the same model:

* ST-Bench (StoryMem, arXiv 2512.19539): ``{story_name, story_overview, scenes: [{scene_num,
  video_prompts, first_frame_prompt, cut}]}``. Each video prompt is a shot; ``cut[i]`` True means
  shot ``i`` starts with a cut, False that it continues the previous shot (every scene's first
  shot is a cut, and continuation prompts say "connected smoothly from previous frame").
* ViStoryBench ``story.json``: ``{"Characters": {key: {name_en, prompt_en, tag, ...}},
  "Shots": [{index, "Setting Description", "Plot Correspondence", "Characters Appearing",
  "Static Shot Description", "Shot Perspective Design"}]}``, where values are either plain
  strings/lists or ``{"en": ..., "ch": ...}`` per language. Reference images lie in
  ``image/<character key>/`` beside the file. Its shots are storyboard panels: one scene, all cuts.

Numbering: ``Scene.index`` and ``Shot.index`` are 1-based, as people count them and as error
messages print them ("scene 2, shot 3"); ``Shot.index`` counts within its scene. The global shot
index that :meth:`StoryScript.iter_shots` yields is 0-based, the position in the whole story.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memstore.errors import InvalidNameError, ScriptError
from memstore.validation import MAX_PROMPT_CHARS, Kind, clean_name

from .suggest import did_you_mean

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_SHOTS = 10_000
CastKind = Kind


class _Model(BaseModel):
    # Unknown keys are refused so that a typo ("promt") fails loudly instead of being ignored.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CastMember(_Model):
    name: str
    kind: CastKind = "character"
    ref: str | None = None  # an entity already in the library, when the name differs from it
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)  # relative to the script file

    def image_paths(self, base: Path) -> list[Path]:
        return [(base / p) for p in self.images]


MAX_FRAMES = 2_000
MAX_STEPS = 500


class ShotOptions(_Model):
    """Per-shot generator settings; each overrides the run's ``--option`` for this shot only."""

    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)  # denoising steps
    guidance: float | None = Field(default=None, ge=0, le=50)  # classifier-free guidance scale
    scales: dict[str, float] = Field(default_factory=dict)  # entity name -> conditioning strength

    @field_validator("scales")
    @classmethod
    def _scales_in_range(cls, scales: dict[str, float]) -> dict[str, float]:
        for name, scale in scales.items():
            if not 0 <= scale <= 5:
                raise ValueError(f"scale of {name!r} must be within 0..5, got {scale}")
        return scales


class Shot(_Model):
    index: int = Field(ge=1)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    cut: bool = True
    cast: list[str] | None = None
    location: str | None = None
    duration: float = Field(default=2.0, gt=0, le=600)
    seed: int | None = None
    first_frame_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    # one era ("armored") for every entity of the shot, or a map of entity name -> era
    era: str | dict[str, str] | None = None
    # entity name -> where it stands in the frame: [x0, y0, x1, y1], normalized to 0..1
    regions: dict[str, tuple[float, float, float, float]] | None = None
    frames: int | None = Field(default=None, ge=1, le=MAX_FRAMES)  # overrides duration x fps
    options: ShotOptions | None = None

    @field_validator("regions")
    @classmethod
    def _boxes_in_frame(
        cls, regions: dict[str, tuple[float, float, float, float]] | None
    ) -> dict[str, tuple[float, float, float, float]] | None:
        for name, (x0, y0, x1, y1) in (regions or {}).items():
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise ValueError(
                    f"region of {name!r} must be [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1"
                )
        return regions

    def eras(self) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        """The era for every entity and the per-entity eras, as the retriever's query takes them."""
        if isinstance(self.era, dict):
            return None, tuple(sorted(self.era.items()))
        return self.era, ()


# Fields added after stores already held shot hashes: left out of the hash while unset, so that
# a run resumed after an upgrade still skips the shots it finished.
_LATER_FIELDS = ("negative_prompt", "era", "regions", "frames", "options")


class Scene(_Model):
    index: int = Field(ge=1)
    location: str | None = None
    shots: list[Shot]


class StoryScript(_Model):
    id: str
    title: str = ""
    overview: str = ""
    cast: list[CastMember] = Field(default_factory=list)
    scenes: list[Scene]
    #: the folder the script was read from; image paths of the cast are relative to it
    base_dir: str | None = None
    #: "native", "st-bench" or "vistorybench"
    source_format: str = "native"

    def iter_shots(self) -> Iterator[tuple[int, Scene, Shot]]:
        """Yield ``(global_shot_index, scene, shot)`` in story order; the global index is 0-based."""
        n = 0
        for scene in self.scenes:
            for shot in scene.shots:
                yield n, scene, shot
                n += 1

    @property
    def num_shots(self) -> int:
        return sum(len(s.shots) for s in self.scenes)

    def cast_member(self, name: str) -> CastMember | None:
        key = name.casefold()
        for member in self.cast:
            if member.name.casefold() == key or any(a.casefold() == key for a in member.aliases):
                return member
        return None


# --- loading -------------------------------------------------------------------------------------


def load_story(path: str | os.PathLike[str]) -> StoryScript:
    """Read a story script, recognising its format from its content (not its file name)."""
    p = Path(path)
    if not p.is_file():
        raise ScriptError(f"story script {str(p)!r} does not exist or is not a file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ScriptError(f"story script {p.name!r} has {size} bytes, at most {MAX_FILE_BYTES} are allowed")
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ScriptError(f"story script {p.name!r} is not UTF-8 text (bad byte at offset {exc.start})") from None
    data = _parse_text(text, p.name)
    default_id = p.parent.name if p.stem.lower() == "story" and p.parent.name else p.stem
    story = parse_story(data, default_id=default_id, base_dir=p.parent)
    return story.model_copy(update={"base_dir": str(p.parent.resolve())})


def _parse_text(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        # safe_load: a script is user data and must never construct Python objects
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScriptError(f"story script {name!r} is neither JSON nor YAML{where}; fix its syntax") from None


def detect_format(data: Any) -> str:
    if not isinstance(data, dict):
        raise ScriptError(f"a story script must be a mapping at the top level, got {type(data).__name__}")
    if "Shots" in data or ("shots" in data and "Characters" in data):
        return "vistorybench"
    scenes = data.get("scenes")
    if isinstance(scenes, list) and scenes and isinstance(scenes[0], dict) and "video_prompts" in scenes[0]:
        return "st-bench"
    if "story_name" in data and "scenes" in data:
        return "st-bench"
    return "native"


def parse_story(data: Any, default_id: str = "story", base_dir: Path | None = None) -> StoryScript:
    """Build a :class:`StoryScript` from already-parsed data of any supported format;
    ``base_dir`` is where relative image paths point (ViStoryBench's ``image/`` folder)."""
    fmt = detect_format(data)
    if fmt == "st-bench":
        return _from_st_bench(data, default_id)
    if fmt == "vistorybench":
        return _from_vistorybench(data, default_id, base_dir=base_dir)
    return _from_native(data, default_id)


def _where(scene: int | None, shot: int | None) -> str:
    parts = []
    if scene is not None:
        parts.append(f"scene {scene}")
    if shot is not None:
        parts.append(f"shot {shot}")
    return ", ".join(parts)


def _error(scene: int | None, shot: int | None, message: str) -> ScriptError:
    where = _where(scene, shot)
    return ScriptError(f"{where}: {message}" if where else message)


def describe_validation(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line from pydantic's errors: unknown keys first (a misspelt key also makes its real
    field "missing"; the typo is what the user must fix), each with a did-you-mean; else the first."""
    errors = err.errors()
    extra = [".".join(str(x) for x in e.get("loc", ())) for e in errors if e.get("type") == "extra_forbidden"]
    if extra:
        known = list(model.model_fields) if model is not None else []
        return "; ".join(f"{name!r} is not a known field{did_you_mean(name.split('.')[-1], known)}" for name in extra)
    e = errors[0]
    field = ".".join(str(x) for x in e.get("loc", ())) or "value"
    kind = e.get("type", "")
    if kind == "missing":
        return f"{field!r} is missing"
    if kind == "extra_forbidden":
        return f"{field!r} is not a known field"
    if kind == "string_too_short":
        return f"{field!r} is empty"
    if kind == "string_too_long":
        limit = (e.get("ctx") or {}).get("max_length")
        return f"{field!r} is too long (at most {limit} characters)"
    got = e.get("input")
    got_s = type(got).__name__ if not isinstance(got, (str, int, float, bool)) else repr(got)
    if isinstance(got_s, str) and len(got_s) > 60:
        got_s = got_s[:57] + "..."
    return f"{field!r}: {e.get('msg', 'invalid')}, got {got_s}"


def _check_count(total: int) -> None:
    if total > MAX_SHOTS:
        raise ScriptError(f"the script has {total} shots, at most {MAX_SHOTS} are allowed; split the story")


def _build_shot(raw: Any, scene_no: int, shot_no: int) -> Shot:
    if isinstance(raw, str):  # a bare string is a shot that is just a prompt
        raw = {"prompt": raw}
    if not isinstance(raw, dict):
        raise _error(scene_no, shot_no, f"a shot must be a mapping or a prompt string, got {type(raw).__name__}")
    raw = dict(raw)
    raw.setdefault("index", shot_no)
    prompt = raw.get("prompt")
    if isinstance(prompt, str) and not prompt.strip():
        raise _error(scene_no, shot_no, "'prompt' is empty")
    try:
        return Shot.model_validate(raw)
    except ValidationError as exc:
        raise _error(scene_no, shot_no, describe_validation(exc, Shot)) from None


def _unknown_keys(raw: dict[str, Any], known: set[str]) -> str | None:
    """A message naming every key that is not a field (with a did-you-mean), or None."""
    unknown = sorted(str(k) for k in set(raw) - known)
    return "; ".join(f"{k!r} is not a known field{did_you_mean(k, known)}" for k in unknown) or None


def _clean_names(names: list[str] | None, scene_no: int, shot_no: int | None, what: str) -> None:
    for n in names or ():
        try:
            clean_name(n, what)
        except InvalidNameError as exc:
            raise _error(scene_no, shot_no, str(exc)) from None


NATIVE_KEYS = {"id", "title", "overview", "cast", "scenes"}


def _from_native(data: dict[str, Any], default_id: str) -> StoryScript:
    unknown = _unknown_keys(data, NATIVE_KEYS)
    if unknown:
        raise ScriptError(unknown)
    scenes_raw = data.get("scenes")
    if scenes_raw is None:
        raise ScriptError("'scenes' is missing; a story script needs a list of scenes of shots")
    if not isinstance(scenes_raw, list):
        raise ScriptError(f"'scenes' must be a list, got {type(scenes_raw).__name__}")
    _check_count(
        sum(len(s.get("shots") or []) for s in scenes_raw if isinstance(s, dict) and isinstance(s.get("shots"), list))
    )

    cast: list[CastMember] = []
    cast_raw = data.get("cast") or []
    if not isinstance(cast_raw, list):
        raise ScriptError(f"'cast' must be a list, got {type(cast_raw).__name__}")
    for i, member in enumerate(cast_raw, 1):
        try:
            m = CastMember.model_validate(member)
            clean_name(m.name, "cast name")
            for a in m.aliases:
                clean_name(a, "alias")
        except ValidationError as exc:
            raise ScriptError(f"cast member {i}: {describe_validation(exc, CastMember)}") from None
        except InvalidNameError as exc:
            raise ScriptError(f"cast member {i}: {exc}") from None
        cast.append(m)

    scenes: list[Scene] = []
    for s_pos, s_raw in enumerate(scenes_raw, 1):
        if not isinstance(s_raw, dict):
            raise _error(s_pos, None, f"a scene must be a mapping, got {type(s_raw).__name__}")
        scene_no = s_raw.get("index", s_pos)
        if not isinstance(scene_no, int) or isinstance(scene_no, bool) or scene_no < 1:
            raise _error(s_pos, None, f"'index' must be a positive integer, got {scene_no!r}")
        unknown = _unknown_keys(s_raw, {"index", "location", "shots"})
        if unknown:
            raise _error(scene_no, None, unknown)
        shots_raw = s_raw.get("shots")
        if not isinstance(shots_raw, list) or not shots_raw:
            raise _error(scene_no, None, "'shots' is missing or empty; give at least one shot")
        shots = [_build_shot(r, scene_no, i) for i, r in enumerate(shots_raw, 1)]
        for shot in shots:
            _clean_names(shot.cast, scene_no, shot.index, "cast name")
        location = s_raw.get("location")
        if location is not None and not isinstance(location, str):
            raise _error(scene_no, None, f"'location' must be a string, got {type(location).__name__}")
        scenes.append(Scene(index=scene_no, location=location, shots=shots))
    return _finish(
        id=data.get("id") or default_id,
        title=data.get("title") or "",
        overview=data.get("overview") or "",
        cast=cast,
        scenes=scenes,
        source_format="native",
    )


def _finish(**fields: Any) -> StoryScript:
    scenes: list[Scene] = fields["scenes"]
    if not scenes:
        raise ScriptError("the script has no scenes; give at least one scene with one shot")
    seen_scenes: set[int] = set()
    for scene in scenes:
        if scene.index in seen_scenes:
            raise _error(scene.index, None, "scene index is used twice")
        seen_scenes.add(scene.index)
        seen_shots: set[int] = set()
        for shot in scene.shots:
            if shot.index in seen_shots:
                raise _error(scene.index, shot.index, "shot index is used twice in this scene")
            seen_shots.add(shot.index)
    first = scenes[0].shots[0]
    if not first.cut:
        # nothing precedes the first shot, so it cannot continue one
        raise _error(scenes[0].index, first.index, "the first shot of a story must be a cut ('cut: true')")
    story_id = fields["id"]
    if not isinstance(story_id, (str, int)) or not str(story_id).strip():
        raise ScriptError(f"'id' must be a non-empty string, got {story_id!r}")
    fields["id"] = str(story_id).strip()
    try:
        return StoryScript(**fields)
    except ValidationError as exc:
        raise ScriptError(describe_validation(exc, StoryScript)) from None


def _from_st_bench(data: dict[str, Any], default_id: str) -> StoryScript:
    scenes_raw = data.get("scenes")
    if not isinstance(scenes_raw, list):
        raise ScriptError("ST-Bench script: 'scenes' must be a list")
    _check_count(
        sum(
            len(s["video_prompts"])
            for s in scenes_raw
            if isinstance(s, dict) and isinstance(s.get("video_prompts"), list)
        )
    )
    scenes: list[Scene] = []
    for s_pos, s_raw in enumerate(scenes_raw, 1):
        if not isinstance(s_raw, dict):
            raise _error(s_pos, None, f"a scene must be a mapping, got {type(s_raw).__name__}")
        scene_no = s_raw.get("scene_num", s_pos)
        if not isinstance(scene_no, int) or isinstance(scene_no, bool) or scene_no < 1:
            raise _error(s_pos, None, f"'scene_num' must be a positive integer, got {scene_no!r}")
        prompts = s_raw.get("video_prompts")
        if not isinstance(prompts, list) or not prompts:
            raise _error(scene_no, None, "'video_prompts' is missing or empty")
        firsts = s_raw.get("first_frame_prompt") or []  # may be missing or shorter than the prompts
        cuts = s_raw.get("cut") or []
        if not isinstance(firsts, list) or not isinstance(cuts, list):
            raise _error(scene_no, None, "'first_frame_prompt' and 'cut' must be lists")
        shots = []
        for i, prompt in enumerate(prompts):
            shot_no = i + 1
            if not isinstance(prompt, str):
                raise _error(scene_no, shot_no, f"'video_prompts' entry must be a string, got {type(prompt).__name__}")
            # A missing cut flag: the scene's first shot is a cut, later ones continue (StoryMem's default).
            cut = cuts[i] if i < len(cuts) else (i == 0)
            if not isinstance(cut, bool):
                raise _error(scene_no, shot_no, f"'cut' must be true or false, got {cut!r}")
            first = firsts[i] if i < len(firsts) else None
            shots.append(
                _build_shot({"prompt": prompt, "cut": cut, "first_frame_prompt": first or None}, scene_no, shot_no)
            )
        scenes.append(Scene(index=scene_no, shots=shots))
    return _finish(
        id=default_id,
        title=_text(data.get("story_name")) or default_id,
        overview=_text(data.get("story_overview")),
        cast=[],
        scenes=scenes,
        source_format="st-bench",
    )


# ViStoryBench keys vary across releases ("Characters Appearing" / "Onstage Characters", language
# dicts or plain values); each field lists the variants to try, first match wins.
_VSB_FIELDS = {
    "setting": ("Setting Description", "Setting", "setting_description", "scene"),
    "plot": ("Plot Correspondence", "Plot", "plot"),
    "characters": ("Characters Appearing", "Onstage Characters", "Characters", "character_name"),
    "static": ("Static Shot Description", "Static Description", "script"),
    "camera": ("Shot Perspective Design", "Shot Perspective", "camera"),
}


def _text(value: Any, lang: str = "en") -> str:
    """A plain string from a value that may be a ``{"en": ..., "ch": ...}`` dict."""
    if isinstance(value, dict):
        for key in (lang, "en", "EN", "english"):
            if key in value:
                return _text(value[key], lang)
        return _text(next(iter(value.values()), ""), lang) if value else ""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_text(v, lang) for v in value)
    return str(value).strip()


def _names(value: Any, lang: str = "en") -> list[str]:
    if isinstance(value, dict):
        for key in (lang, "en"):
            if key in value:
                return _names(value[key], lang)
        return _names(next(iter(value.values()), []), lang) if value else []
    if isinstance(value, str):
        return [v.strip() for v in re.split(r"[,;]", value) if v.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return []


def _pick(shot: dict[str, Any], field: str) -> Any:
    for key in _VSB_FIELDS[field]:
        if key in shot:
            return shot[key]
    return None


def _reference_images(base_dir: Path | None, key: str) -> list[str]:
    """ViStoryBench keeps a character's reference images in ``image/<key>/`` beside story.json."""
    if base_dir is None or not key:
        return []
    folder = Path(base_dir) / "image" / key
    if not folder.is_dir():
        return []
    return [
        f"image/{key}/{f.name}"
        for f in sorted(folder.iterdir())
        if f.is_file() and f.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    ]


def _from_vistorybench(
    data: dict[str, Any], default_id: str, lang: str = "en", base_dir: Path | None = None
) -> StoryScript:
    chars_raw = data.get("Characters") or data.get("characters") or {}
    shots_raw = data.get("Shots") if "Shots" in data else data.get("shots")
    if not isinstance(shots_raw, list):
        raise ScriptError("ViStoryBench script: 'Shots' must be a list")
    _check_count(len(shots_raw))
    if isinstance(chars_raw, list):  # some exports list characters instead of keying them
        chars_raw = {
            str(c.get("name") or c.get("name_en") or i): c for i, c in enumerate(chars_raw) if isinstance(c, dict)
        }
    if not isinstance(chars_raw, dict):
        raise ScriptError("ViStoryBench script: 'Characters' must be a mapping of name to character")

    cast: list[CastMember] = []
    key_to_name: dict[str, str] = {}
    for key, c in chars_raw.items():
        c = c if isinstance(c, dict) else {}
        name = _text(c.get(f"name_{lang}") or c.get("name") or c.get("name_en") or key)
        description = _text(c.get(f"prompt_{lang}") or c.get("prompt") or c.get("key_features") or c.get("description"))
        try:
            clean_name(name, "character name")
        except InvalidNameError as exc:
            raise ScriptError(f"character {key!r}: {exc}") from None
        aliases = [str(key)] if str(key).casefold() != name.casefold() else []
        cast.append(
            CastMember(
                name=name,
                kind="character",
                description=description[:20_000],
                aliases=aliases,
                images=_reference_images(base_dir, str(key)),
            )
        )
        key_to_name[str(key).casefold()] = name
        key_to_name[name.casefold()] = name

    shots: list[Shot] = []
    for pos, s in enumerate(shots_raw, 1):
        if not isinstance(s, dict):
            raise _error(1, pos, f"a shot must be a mapping, got {type(s).__name__}")
        idx = s.get("index", pos)
        shot_no = idx if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 1 else pos
        parts = [_text(_pick(s, f), lang) for f in ("camera", "plot", "static", "setting")]
        prompt = ". ".join(p.rstrip(". ") for p in parts if p)
        if not prompt:
            raise _error(1, shot_no, "no description: 'Static Shot Description' and 'Plot Correspondence' are missing")
        names = [key_to_name.get(n.casefold(), n) for n in _names(_pick(s, "characters"), lang)]
        shots.append(
            _build_shot(
                {"index": shot_no, "prompt": prompt[:MAX_PROMPT_CHARS], "cut": True, "cast": names},
                1,
                shot_no,
            )
        )
    if not shots:
        raise ScriptError("ViStoryBench script: 'Shots' is empty")
    story_type = _text(data.get("Story_type"), lang)
    return _finish(
        id=default_id,
        title=_text(data.get("title") or data.get("Title")) or default_id,
        overview=story_type,
        cast=cast,
        scenes=[Scene(index=1, shots=shots)],
        source_format="vistorybench",
    )


# --- hashing -------------------------------------------------------------------------------------


def shot_input_hash(shot: Shot, extra: dict[str, Any] | None = None) -> str:
    """sha256 over a canonical JSON of a shot's inputs plus ``extra`` (generator, model, retrieved
    ids...). A resumable run skips a shot whose stored hash equals this one."""
    fields = shot.model_dump(mode="json")
    for name in _LATER_FIELDS:
        if fields.get(name) is None:
            fields.pop(name, None)
    payload = {"shot": fields, "extra": extra or {}}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = [
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MAX_PROMPT_CHARS",
    "MAX_SHOTS",
    "CastMember",
    "Scene",
    "Shot",
    "ShotOptions",
    "StoryScript",
    "describe_validation",
    "detect_format",
    "load_story",
    "parse_story",
    "shot_input_hash",
]
