"""Memory-to-video for Wan image-to-video, after StoryMem (arXiv 2512.19539).

StoryMem keeps keyframes of earlier shots and shows them to Wan2.2 I2V as extra frames: each
memory keyframe is VAE-encoded on its own into one latent frame, the memory latents are put in
front of the video latents along time, the I2V conditioning mask is 1 on them (they are known
frames), and after decoding the memory frames are dropped. Optionally the memory frames get
negative temporal RoPE positions (-M..-1) so the video keeps positions 0..T-1, the positions the
model was trained to generate at. RoPE attention depends only on position differences, so the
plain negative offset attends exactly like memory at 0..M-1 followed by the video; what changes
attention is ``memory_rope_gap``, extra distance between memory and shot (a cut). This is an independent implementation on diffusers' Wan
components (WanTransformer3DModel, AutoencoderKLWan); StoryMem's LoRA (one rsLoRA file per Wan2.2
expert, on Wan's original module names) loads through :mod:`generators.lora`, each file into its
own expert at its real scale.

Design choices (ours): the memory positions of the noisy stream hold the clean memory latents at
every step and only the video part is stepped by the scheduler, so with no memory the pipeline is
exactly diffusers' ``WanImageToVideoPipeline``; without a first image, the video part's
conditioning is the VAE encoding of an empty (mid-grey) clip with mask 0, i.e. text + memory only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memstore.errors import InvalidInputError

from .base import (
    ConditionedEntity,
    Conditioning,
    GeneratorAdapter,
    ShotOutput,
    ShotSpec,
    reference_image,
    require_diffusers,
)

if TYPE_CHECKING:  # pragma: no cover
    from .lora import LoadedLora

ROPE_MODES = ("negative", "sequential")


def _pipeline_base() -> type:
    require_diffusers()
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline


@contextlib.contextmanager
def memory_rope(transformer: Any, num_memory: int, mode: str = "negative", gap: int = 0) -> Iterator[None]:
    """Inside the block, ``transformer``'s RoPE gives the first ``num_memory`` latent frames
    positions -M-gap..-1-gap and the video 0..T-1 (``negative``), or leaves the plain
    concatenation 0..M+T-1 (``sequential``, what the unpatched transformer does)."""
    if mode not in ROPE_MODES:
        raise InvalidInputError(f"memory RoPE mode must be one of {ROPE_MODES}, got {mode!r}")
    if gap < 0:
        raise InvalidInputError(f"memory RoPE gap must be >= 0, got {gap}")
    if num_memory == 0 or mode == "sequential":
        yield
        return
    import torch
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    rope = transformer.rope
    original = rope.forward

    def forward(hidden_states: Any) -> tuple[Any, Any]:
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = rope.patch_size
        ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
        cos, sin = original(hidden_states)  # (1, ppf*pph*ppw, 1, D): keep its h/w parts, redo the time part
        positions = np.concatenate([np.arange(-num_memory, 0) - gap, np.arange(0, ppf - num_memory)]).astype(np.float64)
        t_cos, t_sin = get_1d_rotary_pos_embed(
            rope.t_dim, positions, 10000.0, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
        )
        t_cos = t_cos.to(cos.device, cos.dtype).view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1)
        t_sin = t_sin.to(sin.device, sin.dtype).view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1)
        cos = cos.view(ppf, pph, ppw, -1).clone()
        sin = sin.view(ppf, pph, ppw, -1).clone()
        cos[..., : rope.t_dim] = t_cos
        sin[..., : rope.t_dim] = t_sin
        return cos.reshape(1, ppf * pph * ppw, 1, -1), sin.reshape(1, ppf * pph * ppw, 1, -1)

    rope.forward = forward
    try:
        yield
    finally:
        del rope.forward  # back to the class method


def _make_pipeline_class() -> type:
    base = _pipeline_base()
    import torch

    class WanMemoryToVideoPipeline(base):  # type: ignore[misc, valid-type]
        """``WanImageToVideoPipeline`` plus ``memory_images``: keyframes prepended as known latent frames."""

        def encode_memory(self, images: Sequence[Any], height: int, width: int) -> Any:
            """Each keyframe alone through the VAE: one normalized latent frame each, (1, C, M, h, w)."""
            import torch
            from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

            vae = self.vae
            mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1)
            inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1)
            frames = []
            for img in images:
                pixels = self.video_processor.preprocess(img, height=height, width=width).to(vae.device, vae.dtype)
                lat = retrieve_latents(vae.encode(pixels.unsqueeze(2)), sample_mode="argmax").float().cpu()
                frames.append((lat - mean) * inv_std)
            return torch.cat(frames, dim=2)

        def _text_only_condition(self, batch: int, num_frames: int, height: int, width: int, device: Any) -> Any:
            """Video part of the condition without a first image: VAE(empty clip) with mask 0."""
            import torch
            from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

            vae = self.vae
            clip = torch.zeros(1, 3, num_frames, height, width, device=vae.device, dtype=vae.dtype)
            lat = retrieve_latents(vae.encode(clip), sample_mode="argmax").float().to(device)
            mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(device)
            inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(device)
            lat = ((lat - mean) * inv_std).repeat(batch, 1, 1, 1, 1)
            mask = torch.zeros(
                batch, self.vae_scale_factor_temporal, lat.shape[2], lat.shape[3], lat.shape[4], device=device
            )
            return torch.cat([mask, lat], dim=1)

        @torch.no_grad()
        def __call__(
            self,
            prompt: str,
            negative_prompt: str | None = None,
            *,
            memory_images: Sequence[Any] | None = None,
            memory_latents: Any = None,
            image: Any = None,
            height: int = 480,
            width: int = 832,
            num_frames: int = 81,
            num_inference_steps: int = 40,
            guidance_scale: float = 5.0,
            guidance_scale_2: float | None = None,
            generator: Any = None,
            output_type: str = "np",
            memory_rope_offset: str = "negative",
            memory_rope_gap: int = 0,
            decode_memory: bool = True,
            max_sequence_length: int = 512,
            attention_kwargs: dict[str, Any] | None = None,
            return_dict: bool = True,
        ) -> Any:
            from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput

            if self.config.expand_timesteps:
                raise InvalidInputError(
                    "memory-to-video needs a Wan I2V pipeline without expand_timesteps (Wan2.1/2.2 A14B); got a TI2V-5B-style one"
                )
            memory_images = list(memory_images or [])
            t_scale = self.vae_scale_factor_temporal
            num_frames = max(1, (num_frames - 1) // t_scale * t_scale + 1)
            model = self.transformer if self.transformer is not None else self.transformer_2
            mult_h = self.vae_scale_factor_spatial * model.config.patch_size[1]
            mult_w = self.vae_scale_factor_spatial * model.config.patch_size[2]
            height, width = max(mult_h, height // mult_h * mult_h), max(mult_w, width // mult_w * mult_w)
            self._guidance_scale = guidance_scale
            self._guidance_scale_2 = guidance_scale_2 if guidance_scale_2 is not None else guidance_scale
            self._attention_kwargs = attention_kwargs
            self._current_timestep = None
            self._interrupt = False
            device = self._execution_device
            guided = guidance_scale > 1.0

            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                prompt=prompt,
                negative_prompt=negative_prompt,
                do_classifier_free_guidance=guided,
                num_videos_per_prompt=1,
                max_sequence_length=max_sequence_length,
                device=device,
            )
            dtype = model.dtype
            prompt_embeds = prompt_embeds.to(dtype)
            if negative_prompt_embeds is not None:
                negative_prompt_embeds = negative_prompt_embeds.to(dtype)
            image_embeds = None
            if model.config.image_dim is not None:  # Wan2.1 I2V reads a CLIP image embedding too
                if self.image_encoder is None:
                    raise InvalidInputError(
                        "this Wan transformer expects image embeddings (image_dim set) but the pipeline has no image_encoder"
                    )
                source = image if image is not None else (memory_images[0] if memory_images else None)
                if source is None:
                    raise InvalidInputError("Wan2.1 I2V needs an image or at least one memory frame; got neither")
                image_embeds = self.encode_image(source, device).to(dtype)

            self.scheduler.set_timesteps(num_inference_steps, device=device)
            timesteps = self.scheduler.timesteps
            channels = self.vae.config.z_dim
            if image is not None:
                pixels = self.video_processor.preprocess(image, height=height, width=width).to(device, torch.float32)
                latents, condition = self.prepare_latents(
                    pixels, 1, channels, height, width, num_frames, torch.float32, device, generator
                )
            else:
                lat_frames = (num_frames - 1) // t_scale + 1
                shape = (
                    1,
                    channels,
                    lat_frames,
                    height // self.vae_scale_factor_spatial,
                    width // self.vae_scale_factor_spatial,
                )
                from diffusers.utils.torch_utils import randn_tensor

                latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
                condition = self._text_only_condition(1, num_frames, height, width, device)

            # latents the caller already has (the store's token cache) skip the VAE: (1, C, M, h, w)
            num_memory = int(memory_latents.shape[2]) if memory_latents is not None else len(memory_images)
            if num_memory:
                encoded = (
                    memory_latents if memory_latents is not None else self.encode_memory(memory_images, height, width)
                )
                memory = encoded.to(device, torch.float32)
                mem_mask = torch.ones(1, t_scale, num_memory, memory.shape[3], memory.shape[4], device=device)
                condition = torch.cat([torch.cat([mem_mask, memory], dim=1), condition], dim=2)
            else:
                memory = latents[:, :, :0]

            boundary = (
                self.config.boundary_ratio * self.scheduler.config.num_train_timesteps
                if self.config.boundary_ratio is not None
                else None
            )
            rope_contexts = [
                memory_rope(m, num_memory, memory_rope_offset, memory_rope_gap)
                for m in (self.transformer, self.transformer_2)
                if m is not None
            ]
            with contextlib.ExitStack() as stack:
                for ctx in rope_contexts:
                    stack.enter_context(ctx)
                for t in timesteps:
                    self._current_timestep = t
                    if boundary is None or t >= boundary:
                        current, scale = self.transformer, guidance_scale
                    else:
                        current, scale = self.transformer_2, self._guidance_scale_2
                    # Memory latents sit clean in front of the noisy video latents at every step.
                    model_input = torch.cat([torch.cat([memory, latents], dim=2), condition], dim=1).to(dtype)
                    timestep = t.expand(latents.shape[0])
                    with current.cache_context("cond"):
                        noise_pred = current(
                            hidden_states=model_input,
                            timestep=timestep,
                            encoder_hidden_states=prompt_embeds,
                            encoder_hidden_states_image=image_embeds,
                            attention_kwargs=attention_kwargs,
                            return_dict=False,
                        )[0]
                    if guided:
                        with current.cache_context("uncond"):
                            noise_uncond = current(
                                hidden_states=model_input,
                                timestep=timestep,
                                encoder_hidden_states=negative_prompt_embeds,
                                encoder_hidden_states_image=image_embeds,
                                attention_kwargs=attention_kwargs,
                                return_dict=False,
                            )[0]
                        noise_pred = noise_uncond + scale * (noise_pred - noise_uncond)
                    noise_pred = noise_pred[:, :, num_memory:]  # only the video part is stepped
                    latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            self._current_timestep = None

            if output_type == "latent":
                video = latents
            else:
                full = torch.cat([memory, latents], dim=2) if decode_memory else latents
                vae = self.vae
                mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(full.device)
                std = torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(full.device)
                full = (full / (1.0 / std) + mean).to(vae.device, vae.dtype)
                decoded = vae.decode(full, return_dict=False)[0]
                # The causal VAE decodes 1 + 4(L-1) frames from L latents; the last num_frames are the shot,
                # the ones before are the memory frames (and their spill into the first video latent): dropped.
                decoded = decoded[:, :, -num_frames:]
                video = self.video_processor.postprocess_video(decoded, output_type=output_type)
            self.maybe_free_model_hooks()
            if not return_dict:
                return (video,)
            return WanPipelineOutput(frames=video)

    WanMemoryToVideoPipeline.__module__ = __name__
    WanMemoryToVideoPipeline.__qualname__ = "WanMemoryToVideoPipeline"
    return WanMemoryToVideoPipeline


_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    # The subclass needs diffusers at definition time; build it on first use so this module imports light.
    global _CLASS
    if name == "WanMemoryToVideoPipeline":
        if _CLASS is None:
            _CLASS = _make_pipeline_class()
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WanM2VGenerator(GeneratorAdapter):
    """StoryMem-style memory-to-video: the shot's memory keyframes condition a Wan I2V pipeline.

    ``pipeline`` is a ``WanMemoryToVideoPipeline`` (or any Wan I2V pipeline: its components are
    reused). ``first_frame`` "none" generates from text + memory (StoryMem's M2V); "location" also
    uses the location reference as the first frame (an MI2V-like start). ``max_memory`` bounds the
    keyframes (StoryMem uses up to 10).
    """

    name = "wan-m2v"

    def __init__(
        self,
        pipeline: Any = None,
        *,
        max_memory: int = 10,
        memory_rope_offset: str = "negative",
        memory_rope_gap: int = 0,
        decode_memory: bool = True,
        first_frame: str = "none",
        lora: str | None = None,
        lora_scale: float = 1.0,
        lora_alpha: float | None = None,
        lora_rslora: bool | None = None,
        num_inference_steps: int = 40,
        guidance_scale: float = 5.0,
        model_id: str | None = None,
        token_cache: Any = None,
    ):
        if pipeline is None:
            raise InvalidInputError(
                "wan-m2v needs a Wan image-to-video pipeline; got none (pass pipeline=... or use from_pretrained)"
            )
        if memory_rope_offset not in ROPE_MODES:
            raise InvalidInputError(f"memory_rope_offset must be one of {ROPE_MODES}, got {memory_rope_offset!r}")
        if first_frame not in ("none", "location"):
            raise InvalidInputError(f"first_frame must be 'none' or 'location', got {first_frame!r}")
        cls = __getattr__("WanMemoryToVideoPipeline")
        if not isinstance(pipeline, cls):
            pipeline = cls.from_pipe(pipeline)  # same components, our __call__
            pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self.max_memory = int(max_memory)
        self.memory_rope_offset = memory_rope_offset
        self.memory_rope_gap = int(memory_rope_gap)
        self.decode_memory = bool(decode_memory)
        self.first_frame = first_frame
        # (keyframe, VAE spec) -> latent, computed once: a memory frame is encoded for every shot otherwise
        self.token_cache = token_cache
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self._model_id = model_id
        self.loras: list[LoadedLora] = []
        if lora is not None:
            self.load_lora(lora, scale=lora_scale, alpha=lora_alpha, rslora=lora_rslora)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_folder: str = "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        *,
        allow_download: bool = False,
        **kwargs: Any,
    ) -> WanM2VGenerator:
        from ._diffusers import load_pipeline

        pipe = load_pipeline("WanImageToVideoPipeline", model_id_or_folder, allow_download=allow_download)
        return cls(pipe, model_id=str(model_id_or_folder), **kwargs)

    def load_lora(
        self,
        path_or_state_dict: Any,
        *,
        adapter_name: str = "storymem",
        scale: float = 1.0,
        weight_name: str | None = None,
        alpha: float | None = None,
        rslora: bool | None = None,
    ) -> list[LoadedLora]:
        """Load StoryMem's (or any) Wan LoRA, each expert its own file (see :func:`generators.lora.lora_files`):
        a folder with ``backbone_high_noise`` and ``backbone_low_noise``, ``"HIGH,LOW"``, or one file for a
        one-expert pipeline. StoryMem's files are rsLoRA (alpha / sqrt(r)); other files use what they
        state, else alpha = r. ``alpha`` / ``rslora`` override that; ``scale`` multiplies the result."""
        from .lora import load_wan_lora

        loaded = load_wan_lora(
            self.pipeline,
            path_or_state_dict,
            adapter_name=adapter_name,
            weight_name=weight_name,
            alpha=alpha,
            rslora=rslora,
        )
        self.pipeline.set_adapters([adapter_name], adapter_weights=[float(scale)])
        self.loras = [*self.loras, *loaded]
        return loaded

    def unload_lora(self) -> None:
        """Remove every loaded LoRA from both experts."""
        self.pipeline.unload_lora_weights()
        self.loras = []

    @property
    def model_id(self) -> str:
        if self._model_id:
            return self._model_id
        from ._diffusers import model_id_of

        return model_id_of(self.pipeline, "wan-m2v:unknown")

    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        memory = [r for r in result.memory if r.image is not None][-self.max_memory :] if self.max_memory else []
        images = {f"memory:{r.id}": reference_image(r) for r in memory}
        entities = [
            ConditionedEntity(h.entity.name, h.entity.id, h.entity.kind, description=h.entity.description)
            for h in result.hits
        ]
        tensors = {"memory_latents": self._memory_latents(shot, memory)} if self.token_cache and memory else {}
        if self.first_frame == "location" and result.location is not None:
            ref = next((r for r in result.location.references if r.image is not None), None)
            if ref is not None:
                images["first_frame"] = reference_image(ref)
        return Conditioning(
            self.name,
            shot.prompt,
            shot.negative_prompt,
            entities=entities,
            images=images,
            tensors=tensors,
            memory_ids=[r.id for r in memory],
            options={
                "memory_rope_offset": self.memory_rope_offset,
                "memory_rope_gap": self.memory_rope_gap,
                "first_frame": self.first_frame,
                "decode_memory": self.decode_memory,
                "lora": "; ".join(lora.describe() for lora in self.loras) or None,
            },
        )

    def _memory_latents(self, shot: ShotSpec, memory: list[Any]) -> np.ndarray:
        """(M, C, 1, h, w) latents of the memory keyframes, from the token cache (encoded on a miss)."""
        from ._diffusers import pipeline_size, size_multiple

        width, height = pipeline_size(shot, size_multiple(self.pipeline))
        encoder = MemoryLatentEncoder(self.pipeline, height, width, self.model_id)
        return np.stack(self.token_cache.get_or_compute(memory, encoder))

    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        from ._diffusers import call_pipeline

        seed = shot.seed if seed is None else int(seed)
        memory = [conditioning.images[f"memory:{m}"] for m in conditioning.memory_ids]
        cached = conditioning.tensors.get("memory_latents")
        latents = None
        if cached is not None:
            import torch

            latents = torch.from_numpy(np.ascontiguousarray(np.asarray(cached).transpose(2, 1, 0, 3, 4)))
        frames, facts = call_pipeline(
            self.pipeline,
            shot,
            seed,
            prompt=conditioning.prompt,
            negative_prompt=conditioning.negative_prompt,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            memory_images=memory,
            memory_latents=latents,
            image=conditioning.images.get("first_frame"),
            memory_rope_offset=self.memory_rope_offset,
            memory_rope_gap=self.memory_rope_gap,
            decode_memory=self.decode_memory,
        )
        return ShotOutput(frames, shot.fps, self.metadata(shot, conditioning, seed, memory_frames=len(memory), **facts))


class MemoryLatentEncoder:
    """A memory keyframe's VAE latent for the store's token cache: one normalized latent frame per
    keyframe at the shot's size. The spec names the VAE (model id) and the size, so another model
    or resolution never reads these latents."""

    def __init__(self, pipeline: Any, height: int, width: int, model_id: str):
        self.pipeline, self.height, self.width = pipeline, int(height), int(width)
        self.spec = f"wan-vae:{model_id}:{self.height}x{self.width}:argmax-normalized"

    def encode(self, images: list[Any]) -> np.ndarray:
        import torch

        with torch.no_grad():
            latents = self.pipeline.encode_memory(images, self.height, self.width)  # (1, C, M, h, w)
        return latents[0].permute(1, 0, 2, 3).unsqueeze(2).float().cpu().numpy()  # (M, C, 1, h, w)
