"""Input declarations shared by the nodes, in ComfyUI's ``(TYPE, options)`` form.

Lists that the project owns (entity kinds, memory policies) are read from it when ComfyUI asks
for ``INPUT_TYPES`` (once per page load and per queued prompt), so the pack keeps no copy of them.
"""

from __future__ import annotations

from .handles import LIBRARY

Spec = tuple[object, ...]

MAX_SHOT = 100_000
MAX_SEED = 2**31 - 1


def library_input() -> Spec:
    return (LIBRARY, {"tooltip": "An opened library (Open Library, or the pass-through of a node that wrote to it)."})


def prompt_input(tooltip: str = "The shot's text; names and aliases in it pick the blueprints.") -> Spec:
    return ("STRING", {"default": "", "multiline": True, "tooltip": tooltip})


def story_input(default: str = "") -> Spec:
    return ("STRING", {"default": default, "tooltip": "Story id: the same in every node of one story."})


def shot_input() -> Spec:
    return (
        "INT",
        {
            "default": 0,
            "min": 0,
            "max": MAX_SHOT,
            "tooltip": "Shot number from 1 (as on the animatic's frames); 0 = the story's next shot.",
        },
    )


def cut_input() -> Spec:
    return (
        "BOOLEAN",
        {"default": True, "tooltip": "Off: the shot continues the previous one (same place, same people)."},
    )


def override_consent_input() -> Spec:
    return (
        "STRING",
        {
            "default": "",
            "tooltip": "Entities to use although their consent is 'no' or their rights expired "
            "(comma-separated names); the shot's provenance records it.",
        },
    )


def size_input(default: int, tooltip: str) -> Spec:
    return ("INT", {"default": default, "min": 64, "max": 4096, "step": 8, "tooltip": tooltip})


def kind_input() -> Spec:
    from memstore.validation import KINDS

    return (list(KINDS), {"default": KINDS[0]})


def policy_input() -> Spec:
    from retrieval.memory import POLICIES

    return (
        list(POLICIES),
        {
            "default": "relevant",
            "tooltip": "relevant: keyframes of who and where the shot shows; sink_recent: StoryMem's first-3 + recent window.",
        },
    )


def budget_input() -> Spec:
    return ("INT", {"default": 10, "min": 1, "max": 64, "tooltip": "At most this many memory keyframes."})
