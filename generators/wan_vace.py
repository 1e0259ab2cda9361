"""Wan VACE with reference images: the chosen references ride along as VACE ``reference_images``.

VACE encodes each reference image into its own latent frame placed before the video and drops it
after decoding, so identities and objects carry into the shot without an IP-Adapter. One image
per entity (characters in cast order, then the location when ``include_location``).
"""

from __future__ import annotations

from typing import Any

from memstore.errors import InvalidInputError

from .base import (
    ConditionedEntity,
    Conditioning,
    GeneratorAdapter,
    ShotOutput,
    ShotSpec,
    face_crop,
    ordered_characters,
    reference_image,
    require_diffusers,
)


class WanVACEGenerator(GeneratorAdapter):
    """``WanVACEPipeline`` fed ``reference_images`` from the retrieved references.

    ``crop_faces`` sends the face crop instead of the whole reference (tighter identity, less
    costume); ``conditioning_scale`` is VACE's own strength knob.
    """

    name = "wan-vace"

    def __init__(
        self,
        pipeline: Any = None,
        *,
        max_references: int = 3,
        include_location: bool = False,
        crop_faces: bool = False,
        conditioning_scale: float = 1.0,
        num_inference_steps: int = 30,
        guidance_scale: float | None = None,
        model_id: str | None = None,
    ):
        if pipeline is None:
            raise InvalidInputError(
                "wan-vace needs a WanVACEPipeline; got none (pass pipeline=... or use from_pretrained)"
            )
        require_diffusers()
        self.pipeline = pipeline
        self.max_references = int(max_references)
        self.include_location = bool(include_location)
        self.crop_faces = bool(crop_faces)
        self.conditioning_scale = float(conditioning_scale)
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = guidance_scale
        self._model_id = model_id

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_folder: str = "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
        *,
        allow_download: bool = False,
        **kwargs: Any,
    ) -> WanVACEGenerator:
        from ._diffusers import load_pipeline

        pipe = load_pipeline("WanVACEPipeline", model_id_or_folder, allow_download=allow_download)
        return cls(pipe, model_id=str(model_id_or_folder), **kwargs)

    @property
    def model_id(self) -> str:
        if self._model_id:
            return self._model_id
        from ._diffusers import model_id_of

        return model_id_of(self.pipeline, "wan-vace:unknown")

    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        hits = ordered_characters(result)
        if self.include_location and result.location is not None:
            hits.append(result.location)
        entities, images = [], {}
        for hit in hits:
            if len(entities) >= self.max_references:
                break
            ref = next((r for r in hit.references if r.image is not None), None)
            if ref is None:
                continue
            img = reference_image(ref)
            if self.crop_faces and hit.entity.kind == "character":
                img = face_crop(ref, img)
            images[ref.id] = img
            entities.append(
                ConditionedEntity(
                    hit.entity.name,
                    hit.entity.id,
                    hit.entity.kind,
                    (ref.id,),
                    scale=self.conditioning_scale,
                    description=hit.entity.description,
                )
            )
        return Conditioning(
            self.name,
            shot.prompt,
            shot.negative_prompt,
            entities=entities,
            images=images,
            scales={"conditioning_scale": self.conditioning_scale},
        )

    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        from ._diffusers import call_pipeline

        seed = shot.seed if seed is None else int(seed)
        refs = [conditioning.images[rid] for rid in conditioning.reference_ids if rid in conditioning.images]
        extra: dict[str, Any] = {"conditioning_scale": self.conditioning_scale}
        if refs:
            extra["reference_images"] = refs
            # diffusers 0.42 pads VACE's mask with at most as many frames as the video has latent
            # frames, so more references than latent frames fail; render long enough, then sample.
            from ._diffusers import _valid_num_frames

            temporal = getattr(self.pipeline, "vae_scale_factor_temporal", 4)
            rendered = _valid_num_frames(self.pipeline, shot.num_frames)
            if (rendered - 1) // temporal + 1 < len(refs):
                extra["num_frames"] = temporal * (len(refs) - 1) + 1
        frames, facts = call_pipeline(
            self.pipeline,
            shot,
            seed,
            prompt=conditioning.prompt,
            negative_prompt=conditioning.negative_prompt,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            **extra,
        )
        return ShotOutput(frames, shot.fps, self.metadata(shot, conditioning, seed, references=len(refs), **facts))
