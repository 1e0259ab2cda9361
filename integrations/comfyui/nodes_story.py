"""Story Memory (the keyframes a shot remembers) and Write Back Keyframes (a made shot into the store)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import reported
from .handles import LIBRARY, LibraryHandle, fingerprint_of
from .layout import same_size
from .stories import check_story, names_list, session_at, session_config, shot_index
from .tensors import frames_from_image, image_batch
from .widgets import (
    budget_input,
    cut_input,
    library_input,
    override_consent_input,
    policy_input,
    prompt_input,
    shot_input,
    story_input,
)

if TYPE_CHECKING:
    import torch

    from continuity.session import ShotPlan, StorySession


class StoryMemory:
    DESCRIPTION = (
        "The keyframes a shot remembers from the story's earlier shots, as an IMAGE batch in story order: "
        "for memory-to-video, VACE reference inputs or IP-Adapter batches. 'relevant' picks the frames of who "
        "and where the shot shows (from the prompt; without one, a continuation of the previous shot). "
        "With no memory yet (the first shot) the batch is one black 64 x 64 frame and count is 0."
    )
    CATEGORY = "continuity/story"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("memory", "reasons", "count")
    OUTPUT_TOOLTIPS = (
        "Memory keyframes, story order, all at the first one's size.",
        "Per keyframe: its shot and why it was chosen.",
        "How many keyframes (0: the batch is a placeholder).",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "library": library_input(),
                "story": story_input("my-story"),
                "shot": shot_input(),
                "policy": policy_input(),
                "budget": budget_input(),
            },
            "optional": {"prompt": prompt_input("The shot's text (optional): memory follows who and where it shows.")},
        }

    @classmethod
    def IS_CHANGED(cls, library: object = None, **_: object) -> str:
        return fingerprint_of(library)

    @reported
    def run(
        self,
        library: LibraryHandle,
        story: str,
        shot: int = 0,
        policy: str = "relevant",
        budget: int = 10,
        prompt: str = "",
    ) -> tuple[torch.Tensor, str, int]:
        story = check_story(story)
        _check_memory(policy, budget)  # before the shot log is read (its first read creates it)
        index = shot_index(library, story, shot)
        session = session_at(library, story, index, session_config(memory_policy=policy, memory_budget=budget))
        text, cut = prompt.strip(), True
        if not text:  # no prompt: the shot continues the previous one (its people, its place)
            earlier = session.shots()
            text, cut = (earlier[-1].prompt or "", False) if earlier and index > 0 else ("", True)
        if not text:
            return image_batch([]), "", 0
        plan = session.plan(text, cut=cut)
        frames = same_size(plan.memory_frames)
        reasons = "\n".join(f"shot {f.shot + 1}: {why}" for f, why in plan.memory)
        return image_batch(frames), reasons, len(frames)


def _check_memory(policy: str, budget: int) -> None:
    from memstore.errors import InvalidInputError
    from retrieval.memory import POLICIES

    if policy not in POLICIES:
        raise InvalidInputError(f"memory policy {policy!r} is unknown; expected one of {', '.join(POLICIES)}")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise InvalidInputError(f"budget must be a positive number of keyframes, got {budget!r}")


class WriteBackKeyframes:
    DESCRIPTION = (
        "Store a made shot: its keyframes are picked by the project's keyframe rule (StoryMem's) and written "
        "back as the story's memory, and the shot is recorded (with an MP4 and provenance when an output folder "
        "is given). Writing a shot number again replaces that shot's earlier take. The continuity guard, once "
        "built, checks the keyframes here before they enter memory."
    )
    CATEGORY = "continuity/story"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = (LIBRARY, "IMAGE", "INT", "STRING")
    RETURN_NAMES = ("library", "keyframes", "shot", "summary")
    OUTPUT_TOOLTIPS = (
        "The same library, for nodes that must run after this write (the next shot's memory).",
        "The keyframes written back (one black frame when none was kept).",
        "The shot number written (from 1).",
        "What was written.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The shot's frames (a batch in time order)."}),
                "library": library_input(),
                "story": story_input("my-story"),
                "shot": shot_input(),
                "prompt": prompt_input("The shot's text, as given to the nodes that planned it."),
            },
            "optional": {
                "cut": cut_input(),
                "fps": ("INT", {"default": 12, "min": 1, "max": 120}),
                "output_folder": (
                    "STRING",
                    {"default": "", "tooltip": "Folder for the shot's MP4 and provenance; empty: store only."},
                ),
                "override_consent": override_consent_input(),
            },
        }

    @reported
    def run(
        self,
        frames: torch.Tensor,
        library: LibraryHandle,
        story: str,
        shot: int,
        prompt: str,
        cut: bool = True,
        fps: int = 12,
        output_folder: str = "",
        override_consent: str = "",
    ) -> tuple[LibraryHandle, torch.Tensor, int, str]:
        video = frames_from_image(frames, "frames")  # checked before anything is read or written
        story = check_story(story)
        if not prompt.strip():
            from memstore.errors import InvalidInputError

            raise InvalidInputError("the shot prompt is empty; give the text the shot was made from")
        plan, session = _plan(library, story, shot, prompt, cut, video.shape, fps, override_consent, output_folder)
        done = session.commit(plan, video, fps=fps)
        # one keyframe shown once, though it is stored once per entity it shows
        distinct = {r.sha256: r for r in done.keyframes if r.image is not None}
        keyframes = same_size([np.asarray(r.pil().convert("RGB")) for r in distinct.values()])
        summary = (
            f"story {story!r} shot {plan.index + 1}: {len(video)} frames, {len(distinct)} keyframe(s) written back"
            + (f", video {done.video}" if done.video is not None else "")
        )
        return library, image_batch(keyframes), plan.index + 1, summary


def _plan(
    handle: LibraryHandle,
    story: str,
    shot: int,
    prompt: str,
    cut: bool,
    shape: tuple[int, ...],
    fps: int,
    override_consent: str,
    output_folder: str,
) -> tuple[ShotPlan, StorySession]:
    """The shot's plan at the frames' own size (the size enters its input hash)."""
    index = shot_index(handle, story, shot)
    config = session_config(width=shape[2], height=shape[1], fps=fps, overrides=names_list(override_consent))
    session = session_at(handle, story, index, config)
    if output_folder.strip():
        from pathlib import Path

        session.out_dir = Path(output_folder.strip()).expanduser()
    return session.plan(prompt, cut=cut), session
