"""Animatic Preview: a shot as storyboard frames from the library's own images, no model weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import reported
from .handles import LibraryHandle, fingerprint_of
from .nodes_query import reasons_text
from .stories import check_story, names_list, session_at, session_config, shot_index
from .tensors import image_batch
from .widgets import (
    MAX_SEED,
    cut_input,
    library_input,
    override_consent_input,
    prompt_input,
    shot_input,
    size_input,
    story_input,
)

if TYPE_CHECKING:
    import torch

    from generators import ShotSpec
    from retrieval import RetrievalResult

FPS = 12


class AnimaticPreview:
    DESCRIPTION = (
        "Preview a shot before spending GPU time: the location's reference as background, a card per "
        "character, the prompt as caption and (with a story) the remembered keyframes, with a slow pan. "
        "Needs no weights; the same inputs and seed give the same frames."
    )
    CATEGORY = "continuity/preview"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("frames", "reasons")
    OUTPUT_TOOLTIPS = ("The shot's frames.", "Per entity: score and why it was retrieved.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "library": library_input(),
                "prompt": prompt_input(),
                "width": size_input(640, "Frame width."),
                "height": size_input(360, "Frame height."),
                "frames": (
                    "INT",
                    {"default": 24, "min": 1, "max": 480, "tooltip": f"Number of frames ({FPS} per second)."},
                ),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
            },
            "optional": {
                "story": story_input(),
                "shot": shot_input(),
                "cut": cut_input(),
                "override_consent": override_consent_input(),
            },
        }

    @classmethod
    def IS_CHANGED(cls, library: object = None, **_: object) -> str:
        return fingerprint_of(library)

    @reported
    def run(
        self,
        library: LibraryHandle,
        prompt: str,
        width: int = 640,
        height: int = 360,
        frames: int = 24,
        seed: int = 0,
        story: str = "",
        shot: int = 0,
        cut: bool = True,
        override_consent: str = "",
    ) -> tuple[torch.Tensor, str]:
        from generators import get_generator

        if not prompt.strip():  # before the shot log is read
            from memstore.errors import InvalidInputError

            raise InvalidInputError("the shot prompt is empty; give the text of the shot")
        overrides = names_list(override_consent)
        if story.strip():
            spec, result = _story_shot(library, prompt, width, height, frames, seed, story, shot, cut, overrides)
        else:
            spec, result = _single_shot(library, prompt, width, height, frames, seed, overrides)
        output = get_generator("animatic").run(spec, result, seed=seed)
        return image_batch(output.frames), reasons_text(result)


def _single_shot(
    handle: LibraryHandle, prompt: str, width: int, height: int, frames: int, seed: int, overrides: tuple[str, ...]
) -> tuple[ShotSpec, RetrievalResult]:
    from continuity.consent import check_rights
    from generators import ShotSpec
    from retrieval import ShotQuery

    spec = ShotSpec(prompt=prompt, num_frames=frames, width=width, height=height, fps=FPS, seed=seed)
    result = handle.retriever.retrieve(ShotQuery(prompt))
    check_rights(result.hits, overrides=overrides)
    return spec, result


def _story_shot(
    handle: LibraryHandle,
    prompt: str,
    width: int,
    height: int,
    frames: int,
    seed: int,
    story: str,
    shot: int,
    cut: bool,
    overrides: tuple[str, ...],
) -> tuple[ShotSpec, RetrievalResult]:
    """The story's plan of the shot: its context, its memory keyframes, its shot number on the frames."""
    story = check_story(story)
    index = shot_index(handle, story, shot)
    config = session_config(width=width, height=height, fps=FPS, seed=seed, overrides=overrides)
    plan = session_at(handle, story, index, config).plan(prompt, cut=cut, seed=seed, duration=frames / FPS)
    return plan.spec, plan.result
