"""Prompt enrichment: blueprint descriptions woven into the shot prompt, for any text-to-X pipeline.

"Aria and Bram argue" becomes "Aria (a red-haired knight with a scar) and Bram (a tall old
fisherman) argue. Setting: Harbor (a foggy stone harbor)". The text stays within a budget because
CLIP text encoders read only 77 tokens: descriptions are shortened to their first clause, then
dropped from the lowest-ranked entity up, and the user's own prompt is never cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from memstore.errors import InvalidInputError

from .base import ConditionedEntity, Conditioning, GeneratorAdapter, ShotOutput, ShotSpec, require_diffusers

# About 4 characters per CLIP BPE token in English: 77 tokens minus BOS/EOS is ~300 characters.
CLIP_CHAR_BUDGET = 300


def _mention(prompt: str, names: Sequence[str]) -> re.Match[str] | None:
    """First whole-word mention of any of ``names`` (possessive included), case-insensitive."""
    best = None
    for name in names:
        m = re.search(rf"(?<!\w){re.escape(name)}(?:'s)?(?!\w)", prompt, flags=re.IGNORECASE)
        if m and (best is None or m.start() < best.start()):
            best = m
    return best


def _first_clause(text: str) -> str:
    return re.split(r"[,;.]\s", text.strip(), maxsplit=1)[0].rstrip(".,; ")


def _compose(prompt: str, items: Sequence[tuple[Sequence[str], str, str, str]]) -> str:
    """items: (names, display name, kind, description); empty descriptions add nothing."""
    out = prompt.strip()
    cast: list[str] = []
    settings: list[str] = []
    # Insert from the end of the prompt backwards so earlier offsets stay valid.
    inserts: list[tuple[int, str]] = []
    for names, display, kind, desc in items:
        if not desc:
            continue
        m = _mention(out, names)
        if m is not None:
            inserts.append((m.end(), f" ({desc})"))
        elif kind == "location":
            settings.append(f"{display} ({desc})")
        elif kind == "style":
            settings.append(f"style: {desc}")
        else:
            cast.append(f"{display} ({desc})")
    for pos, text in sorted(inserts, reverse=True):
        out = out[:pos] + text + out[pos:]
    tail = []
    if cast:
        tail.append("With " + ", ".join(cast))
    if settings:
        tail.append("Setting: " + ", ".join(settings))
    if tail:
        out = out.rstrip(". ") + ". " + ". ".join(tail)
    return out


def enrich_prompt(
    prompt: str,
    hits: Sequence[Any],
    *,
    char_budget: int = CLIP_CHAR_BUDGET,
    token_count: Callable[[str], int] | None = None,
    max_tokens: int | None = None,
) -> str:
    """The prompt with each hit's description after its first mention (or appended), within budget.

    ``char_budget`` bounds characters; with ``token_count`` and ``max_tokens`` the real tokenizer
    decides instead. Hits are in rank order; the lowest-ranked lose their descriptions first.
    """
    if char_budget < 1:
        raise InvalidInputError(f"char_budget must be >= 1, got {char_budget}")
    items = [(list(h.entity.names), h.entity.name, h.entity.kind, " ".join(h.entity.description.split())) for h in hits]

    def fits(text: str) -> bool:
        if token_count is not None and max_tokens is not None:
            return token_count(text) <= max_tokens
        return len(text) <= char_budget

    text = _compose(prompt, items)
    if fits(text):
        return text
    items = [(n, d, k, _first_clause(desc)) for n, d, k, desc in items]  # shorten, then drop
    for drop in range(len(items) + 1):
        kept = items[: len(items) - drop] + [(n, d, k, "") for n, d, k, _ in items[len(items) - drop :]]
        text = _compose(prompt, kept)
        if fits(text):
            return text
    return prompt.strip()


class PromptGenerator(GeneratorAdapter):
    """Any diffusers text-to-image or text-to-video pipeline, prompted with enriched text.

    ``max_tokens`` (default 77 for CLIP tokenizers) measures with the pipeline's own tokenizer when
    it has one; ``char_budget`` is the fallback bound.
    """

    name = "prompt"

    def __init__(
        self,
        pipeline: Any = None,
        *,
        char_budget: int = CLIP_CHAR_BUDGET,
        max_tokens: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        kinds: Sequence[str] = ("character", "location", "prop", "style"),
        model_id: str | None = None,
    ):
        self.pipeline = pipeline
        self.char_budget = int(char_budget)
        self.max_tokens = max_tokens
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = guidance_scale
        self.kinds = tuple(kinds)
        self._model_id = model_id

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_folder: str,
        *,
        pipeline_class: str = "DiffusionPipeline",
        allow_download: bool = False,
        **kwargs: Any,
    ) -> PromptGenerator:
        from ._diffusers import load_pipeline

        pipe = load_pipeline(pipeline_class, model_id_or_folder, allow_download=allow_download)
        return cls(pipe, model_id=str(model_id_or_folder), **kwargs)

    @property
    def model_id(self) -> str:
        if self._model_id:
            return self._model_id
        from ._diffusers import model_id_of

        return model_id_of(self.pipeline, "prompt:unknown") if self.pipeline is not None else "prompt:none"

    def _token_counter(self) -> tuple[Callable[[str], int] | None, int | None]:
        tok = getattr(self.pipeline, "tokenizer", None)
        if tok is None:
            return None, None
        limit = self.max_tokens or getattr(tok, "model_max_length", None)
        if not limit or limit > 4096:  # tokenizers without a real limit report a huge sentinel
            return None, None
        # tokenize() (unlike __call__) does not warn about texts longer than the window we are measuring.
        specials = tok.num_special_tokens_to_add() if hasattr(tok, "num_special_tokens_to_add") else 2
        return (lambda text: len(tok.tokenize(text)) + specials), int(limit)

    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        hits = [h for h in result.hits if h.entity.kind in self.kinds]
        counter, limit = self._token_counter()
        prompt = enrich_prompt(shot.prompt, hits, char_budget=self.char_budget, token_count=counter, max_tokens=limit)
        entities = [
            ConditionedEntity(h.entity.name, h.entity.id, h.entity.kind, description=h.entity.description) for h in hits
        ]
        return Conditioning(
            self.name,
            prompt,
            shot.negative_prompt,
            entities=entities,
            options={"original_prompt": shot.prompt, "char_budget": self.char_budget, "max_tokens": limit},
        )

    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        if self.pipeline is None:
            raise InvalidInputError(
                "prompt generator has no pipeline; pass PromptGenerator(pipeline) or use from_pretrained"
            )
        require_diffusers()
        from ._diffusers import call_pipeline

        seed = shot.seed if seed is None else int(seed)
        frames, facts = call_pipeline(
            self.pipeline,
            shot,
            seed,
            prompt=conditioning.prompt,
            negative_prompt=conditioning.negative_prompt,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
        )
        return ShotOutput(frames, shot.fps, self.metadata(shot, conditioning, seed, **facts))
