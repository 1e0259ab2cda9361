"""Which view of a blueprint fits a shot: camera words in the prompt ("from behind", "in profile",
"close-up", "wide shot") name the views a reference should show, best first.

A reference's view comes from its registration (a turnaround sheet's panel, ``--view``); a reference
without one is never refused, only not preferred, so a shot that asks for a back view of an entity
with no back view still gets its best reference (the fallback the issue asks for)."""

from __future__ import annotations

import re

from memstore.validation import View, clean_view

# (pattern, views it asks for, best first). Checked in order; every match adds its views.
_WORDS: tuple[tuple[str, tuple[View, ...]], ...] = (
    (
        r"\b(from behind|from the back|back view|rear view|back to (the )?camera|walks? away|seen from behind)\b",
        ("back",),
    ),
    (r"\b(in profile|profile (view|shot)|side view|from the side|side-on)\b", ("profile", "three-quarter")),
    (r"\b(three[- ]quarters?( view)?|3/4 view)\b", ("three-quarter", "front")),
    (r"\b(extreme close[- ]?up|close[- ]?up|closeup|headshot|portrait|face fills)\b", ("close-up", "front")),
    (
        r"\b(wide shot|full shot|full[- ]body|full[- ]length|long shot|establishing shot|head to toe)\b",
        ("full-body", "front"),
    ),
    (r"\b(front view|facing (the )?camera|faces (the )?camera|looks? (in)?to the camera|head-on)\b", ("front",)),
)
_CAMERA_WORDS = tuple((re.compile(pattern, re.IGNORECASE), views) for pattern, views in _WORDS)


def wanted_views(prompt: str, extra: str | None = None, explicit: str | None = None) -> list[tuple[View, str]]:
    """The views the shot asks for, best first, each with the words that asked for it. An explicit
    view (``ShotQuery.view``) comes first; then the camera words of the prompt and of ``extra``
    (the first-frame prompt)."""
    out: list[tuple[View, str]] = []
    view = clean_view(explicit)
    if view is not None:
        out.append((view, "asked for"))
    for text in (prompt, extra or ""):
        for pattern, views in _CAMERA_WORDS:
            match = pattern.search(text)
            if match:
                out += [(v, match.group(0)) for v in views]
    first: dict[View, str] = {}
    for view, why in out:
        first.setdefault(view, why)
    return list(first.items())


def view_bonus(view: str | None, wanted: list[tuple[View, str]]) -> float:
    """How much a reference's view adds to its relevance: 1.0 for the best wanted view, less for
    later ones, nothing for other or unlabelled views (strong enough to beat quality and era)."""
    if view is None or not wanted:
        return 0.0
    for rank, (want, _) in enumerate(wanted):
        if view == want:
            return 1.0 / (1 + rank)
    return 0.0


__all__ = ["view_bonus", "wanted_views"]
