"""Validation of every user-supplied string that reaches a table, a filter or a file name.

Names are kept as the user wrote them (NFC-normalised), but never reach SQL unquoted: filters are
built with :func:`sql_str`, which is the single place where quoting happens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Literal, cast, get_args

from .errors import FilterError, InvalidInputError, InvalidNameError

MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 20_000
#: the one prompt limit: a story script's shot, a query over HTTP or in Python
MAX_PROMPT_CHARS = 20_000
#: the one list of entity kinds (the Literal types the models; the tuple checks input)
Kind = Literal["character", "location", "prop", "style"]
KINDS: tuple[str, ...] = get_args(Kind)
#: registered blueprints, harvested keyframes (a story's memory), and keyframes of shots the continuity
#: guard rejected: kept to be seen (report, audit), never offered as memory or conditioning
Source = Literal["registered", "harvested", "rejected"]
SOURCES: tuple[str, ...] = get_args(Source)
#: how a reference shows its entity: camera angle (front, three-quarter, profile, back) or framing
#: (full-body, close-up); a turnaround sheet is split into one labelled reference per view
View = Literal["front", "three-quarter", "profile", "back", "full-body", "close-up"]
VIEWS: tuple[str, ...] = get_args(View)
MAX_FILE_NAME = 255

#: the range of every stored time, in UTC: far enough from datetime's year 1..9999 bounds that no
#: time-zone offset or clamping arithmetic can leave them (a value outside bricks every read)
MIN_TIME = datetime(1900, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(9000, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
#: FAISS factories a library may use: anything else can exhaust memory or crash in C++
INDEX_FACTORY_FORMS = "auto, Flat, HNSW<M>,Flat (M 4..128), IVF<n>,Flat (n 1..65536) or PQ<m>x4fs,RFlat (m 2..512, dividing the dimension)"
_HNSW_RE = re.compile(r"^HNSW(\d{1,3}),Flat$")
_IVF_RE = re.compile(r"^IVF(\d{1,5}),Flat$")
_PQ_RE = re.compile(r"^PQ(\d{1,3})x4fs,RFlat$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEX_ID_RE = re.compile(r"^[0-9a-f]{16,64}$")
_LIBRARY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ERA_RE = re.compile(r"^[\w][\w .:+-]{0,63}$", re.UNICODE)
_TAG_RE = re.compile(r"^[\w][\w .:+/-]{0,63}$", re.UNICODE)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # lone surrogates: no table or filter can hold them
        return False


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


def clean_name(name: object, what: str = "name") -> str:
    """Return a stored-safe entity name or alias; raise :class:`InvalidNameError` otherwise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name).strip()
    if not text:
        raise InvalidNameError(f"{what} is empty; give a non-empty {what}")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} has {len(text)} characters, at most {MAX_NAME_LENGTH} are allowed")
    if "/" in text or "\\" in text:
        raise InvalidNameError(f"{what} {text!r} contains a path separator ('/' or '\\'); remove it")
    if _has_control(text):
        raise InvalidNameError(f"{what} {text!r} contains control or invisible characters; remove them")
    if text in (".", ".."):
        raise InvalidNameError(f"{what} {text!r} is reserved; choose another")
    return text


def clean_text(value: object, what: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A short free-text field (rights owner, license, story id): a valid, printable string."""
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidNameError(f"{what} has {len(value)} characters, at most {max_length} are allowed")
    if not _is_utf8(value) or _has_control(value):
        raise InvalidNameError(f"{what} {value!r} contains control, invisible or invalid characters; remove them")
    return value


def name_key(name: str) -> str:
    """Case- and space-insensitive key under which names and aliases must be unique."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def clean_library(name: object) -> str:
    if not isinstance(name, str) or not _LIBRARY_RE.match(name):
        raise InvalidNameError(
            f"library name {name!r} is not allowed; use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def clean_time(value: datetime | None, what: str = "time") -> datetime | None:
    """A time in UTC inside [MIN_TIME, MAX_TIME] (a naive time is UTC); raise InvalidInputError otherwise."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a date and time, got {type(value).__name__}")
    try:
        utc = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (OverflowError, ValueError):  # the offset moves it past year 1 or 9999
        utc = None
    if utc is None or not MIN_TIME <= utc <= MAX_TIME:
        raise InvalidInputError(
            f"{what} {value.isoformat()} is outside the allowed range; give a time from"
            f" {MIN_TIME.year} to {MAX_TIME.year} (UTC)"
        )
    return utc


def clean_index_factory(factory: object) -> str:
    """A FAISS factory string from the allowed set; raise InvalidInputError otherwise."""
    if isinstance(factory, str) and factory in ("auto", "Flat"):
        return factory
    if isinstance(factory, str):
        hnsw, ivf, pq = _HNSW_RE.match(factory), _IVF_RE.match(factory), _PQ_RE.match(factory)
        if (hnsw and 4 <= int(hnsw.group(1)) <= 128) or (ivf and 1 <= int(ivf.group(1)) <= 65536):
            return factory
        if pq and 2 <= int(pq.group(1)) <= 512:  # that m divides the dimension is checked at build
            return factory
    raise InvalidInputError(f"index factory {str(factory)[:80]!r} is not allowed; use {INDEX_FACTORY_FORMS}")


def clean_id(value: object, what: str = "id", *, hex_only: bool = False) -> str:
    """An entity id (letters, digits, '_' or '-') or, with ``hex_only``, a reference id (16-64 hex
    digits: its first 16 are the FAISS key)."""
    pattern = _HEX_ID_RE if hex_only else _ID_RE
    if not isinstance(value, str) or not pattern.match(value):
        form = "16-64 lowercase hex digits" if hex_only else "1-64 letters, digits, '_' or '-'"
        raise InvalidInputError(f"{what} {str(value)[:80]!r} is not allowed; an id is {form}")
    return value


def clean_kind(kind: object) -> Kind:
    if kind not in KINDS:
        raise FilterError(f"kind {kind!r} is unknown; expected one of {', '.join(KINDS)}")
    return cast(Kind, kind)


def clean_source(source: object) -> Source:
    if source not in SOURCES:
        raise InvalidInputError(f"source {source!r} is unknown; expected one of {SOURCES}")
    return cast(Source, source)


def clean_view(view: object) -> View | None:
    """A view label, or None; a near miss ("side", "3/4") is named with the labels allowed."""
    if view is None:
        return None
    key = str(view).strip().casefold().replace("_", "-").replace(" ", "-")
    key = _VIEW_SYNONYMS.get(key, key)
    if key not in VIEWS:
        raise InvalidInputError(f"view {str(view)[:40]!r} is unknown; use one of {', '.join(VIEWS)}")
    return cast(View, key)


_VIEW_SYNONYMS = {
    "3/4": "three-quarter",
    "three-quarters": "three-quarter",
    "side": "profile",
    "full": "full-body",
    "closeup": "close-up",
    "rear": "back",
    "fullbody": "full-body",
}


def clean_file_name(name: object) -> str | None:
    """The last part of a file name as a user gave it (kept to be shown and exported), or None."""
    if name is None:
        return None
    text = str(name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    text = "".join(ch for ch in text if ch.isprintable())[:MAX_FILE_NAME]
    return text or None


def clean_era(era: object) -> str:
    if not isinstance(era, str) or not _ERA_RE.match(era) or _has_control(era):
        raise InvalidNameError(f"era label {era!r} is not allowed; use 1-64 letters, digits, spaces or '_.:+-'")
    return era


def clean_tag(tag: object) -> str:
    if not isinstance(tag, str) or not _TAG_RE.match(tag) or _has_control(tag):
        raise FilterError(f"tag {tag!r} is not allowed; use 1-64 letters, digits, spaces or '_.:+/-'")
    return tag


def clean_tags(tags: Iterable[object]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        seen[clean_tag(tag)] = None
    return list(seen)


def clean_description(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InvalidNameError(f"description must be a string, got {type(text).__name__}")
    if not _is_utf8(text):
        raise InvalidNameError("description is not valid Unicode (a lone surrogate); give valid text")
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise InvalidNameError(f"description has {len(text)} characters, at most {MAX_DESCRIPTION_LENGTH} are allowed")
    # Keep newlines and tabs; drop other control characters rather than refuse prose.
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc").strip()


def sql_str(value: str) -> str:
    """Quote ``value`` as a SQL string literal for a LanceDB filter: the only quoting in the project."""
    if not isinstance(value, str):
        raise FilterError(f"filter value must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise FilterError("filter value contains a NUL byte")
    if not _is_utf8(value):
        raise FilterError(f"filter value {value!r} is not valid Unicode (a lone surrogate); give valid text")
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b')`` with every value quoted by :func:`sql_str`."""
    items = [sql_str(v) for v in values]
    if not items:
        return "false"
    return f"{column} IN ({', '.join(items)})"


def sql_int_in(column: str, values: Iterable[int]) -> str:
    """``column IN (1, 2)`` for integers (each checked to be one); ``false`` when empty."""
    items = [str(int(v)) for v in values]
    return f"{column} IN ({', '.join(items)})" if items else "false"
