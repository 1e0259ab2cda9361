"""IP-Adapter for diffusers pipelines with ``IPAdapterMixin`` (SD 1.5, SDXL, AnimateDiff).

Each conditioned entity contributes one image to one loaded IP-Adapter. The image embeddings are
computed in ``prepare`` (once, batched, through the token cache when one is given) and handed to
the pipeline as ``ip_adapter_image_embeds``, so ``generate`` never runs the image encoder. With
two or more entities (or regions in the shot) every entity gets a mask, from the shot's regions or
a left-to-right layout, applied through diffusers' ``IPAdapterMaskProcessor`` and a per-image scale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError, MissingWeightsError

from .base import (
    ConditionedEntity,
    Conditioning,
    GeneratorAdapter,
    ShotOutput,
    ShotSpec,
    ordered_characters,
    region_masks,
    regions_for,
    require_diffusers,
)

LAYERS = ("image_embeds", "penultimate")


class HFImageEncoder:
    """A ``CLIPVisionModelWithProjection`` as a token-cache encoder (``spec`` + ``encode``).

    ``layer="image_embeds"`` gives the projected embedding base IP-Adapters read (N x D);
    ``layer="penultimate"`` gives the penultimate hidden states Plus adapters read (N x S x H).
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        layer: str = "image_embeds",
        model_path: str | None = None,
        batch_size: int = 16,
    ):
        require_diffusers()
        if layer not in LAYERS:
            raise InvalidInputError(f"layer must be one of {LAYERS}, got {layer!r}")
        if processor is None:
            from transformers import CLIPImageProcessor

            size = int(model.config.image_size)
            processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.model = model.eval()
        self.processor = processor
        self.layer = layer
        self.batch_size = int(batch_size)
        name = model_path or getattr(model.config, "_name_or_path", "") or ""
        if not name:
            # An in-memory model: name it by its weights so two different models never share cache rows.
            digest = hashlib.sha256()
            for tensor in list(model.state_dict().values())[:4]:
                digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
            name = "in-memory-" + digest.hexdigest()[:12]
        self.spec = f"hf-clip-vision:{name}:{layer}"
        self._negative: np.ndarray | None = None

    @classmethod
    def from_pretrained(
        cls, folder: str, *, layer: str = "image_embeds", subfolder: str | None = None, **kwargs: Any
    ) -> HFImageEncoder:
        require_diffusers()
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        path = Path(folder).expanduser() / (subfolder or "")
        if not (path / "config.json").exists():
            raise MissingWeightsError(
                f"CLIP image encoder not found: expected config.json and weights in {path}; "
                "download e.g. h94/IP-Adapter models/image_encoder and pass that folder"
            )
        model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True)
        try:
            processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
        except OSError:
            processor = None
        return cls(model, processor, layer=layer, model_path=str(path), **kwargs)

    def _forward(self, pixel_values: Any) -> Any:
        if self.layer == "image_embeds":
            return self.model(pixel_values).image_embeds
        return self.model(pixel_values, output_hidden_states=True).hidden_states[-2]

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        outs = []
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                pixels = self.processor(
                    [im.convert("RGB") for im in images[i : i + self.batch_size]], return_tensors="pt"
                ).pixel_values.to(device=device, dtype=dtype)
                outs.append(self._forward(pixels).float().cpu().numpy())
        return np.concatenate(outs, axis=0)

    def negative(self) -> np.ndarray:
        """The unconditional embedding, as diffusers makes it (zeros, or the encoding of zero pixels)."""
        if self._negative is None:
            import torch

            if self.layer == "image_embeds":
                dim = int(self.model.config.projection_dim)
                self._negative = np.zeros((dim,), dtype=np.float32)
            else:
                size = int(self.model.config.image_size)
                param = next(self.model.parameters())
                zeros = torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype)
                with torch.no_grad():
                    self._negative = self._forward(zeros)[0].float().cpu().numpy()
        return self._negative


def ip_adapter_loaded(pipeline: Any) -> bool:
    unet = getattr(pipeline, "unet", None)
    return getattr(getattr(unet, "config", None), "encoder_hid_dim_type", None) == "ip_image_proj"


def load_adapter(pipeline: Any, adapter: Any, *, subfolder: str = "", weight_name: str | None = None) -> None:
    """``pipeline.load_ip_adapter`` from a folder (or file) or a state dict; no image encoder is loaded."""
    if isinstance(adapter, Mapping):
        pipeline.load_ip_adapter(
            dict(adapter), subfolder=subfolder, weight_name=weight_name or "", image_encoder_folder=None
        )
        return
    path = Path(str(adapter)).expanduser()
    if path.is_file():
        path, weight_name = path.parent, path.name
    weight_name = weight_name or "ip-adapter.safetensors"
    if not (path / subfolder / weight_name).exists():
        raise MissingWeightsError(
            f"IP-Adapter weights not found: expected {path / subfolder / weight_name}; "
            "download them (e.g. h94/IP-Adapter) and pass the folder and weight_name"
        )
    pipeline.load_ip_adapter(str(path), subfolder=subfolder, weight_name=weight_name, image_encoder_folder=None)


class IPAdapterGenerator(GeneratorAdapter):
    """Characters (and optionally the location) as IP-Adapter image prompts, one image per entity.

    ``scale`` is the default strength; ``scales`` overrides it per entity name. ``adapter`` is a
    folder, a .safetensors file or a state dict, loaded unless the pipeline already has one.
    ``token_cache`` (an object with ``get_or_compute(references, encoder)``) makes repeated shots
    of the same references free.
    """

    name = "ip-adapter"

    def __init__(
        self,
        pipeline: Any = None,
        *,
        encoder: Any = None,
        token_cache: Any = None,
        adapter: Any = None,
        subfolder: str = "",
        weight_name: str | None = None,
        scale: float = 0.6,
        scales: Mapping[str, float] | None = None,
        include_location: bool = False,
        max_entities: int = 4,
        use_masks: bool | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        model_id: str | None = None,
    ):
        if pipeline is None:
            raise InvalidInputError(
                f"{self.name} needs a diffusers pipeline with IPAdapterMixin; got none "
                f"(pass pipeline=... or use {type(self).__name__}.from_pretrained(...))"
            )
        require_diffusers()
        if not hasattr(pipeline, "load_ip_adapter"):
            raise InvalidInputError(
                f"{type(pipeline).__name__} has no load_ip_adapter; expected an IPAdapterMixin pipeline"
            )
        self.pipeline = pipeline
        self.encoder = encoder
        self.token_cache = token_cache
        self.scale = float(scale)
        self.scales = {k.casefold(): float(v) for k, v in (scales or {}).items()}
        self.include_location = bool(include_location)
        self.max_entities = int(max_entities)
        self.use_masks = use_masks
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = guidance_scale
        self._model_id = model_id
        if adapter is not None:
            load_adapter(pipeline, adapter, subfolder=subfolder, weight_name=weight_name)
        elif not ip_adapter_loaded(pipeline):
            raise InvalidInputError(
                f"{type(pipeline).__name__} has no IP-Adapter loaded; pass adapter=FOLDER or a state dict"
            )
        self._check_encoder()

    def _check_encoder(self) -> None:
        if self.encoder is None:
            raise InvalidInputError("ip-adapter needs an image encoder (encoder=HFImageEncoder(...)); got none")

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_folder: str,
        adapter: str,
        *,
        image_encoder: str | None = None,
        pipeline_class: str = "StableDiffusionPipeline",
        layer: str = "image_embeds",
        weight_name: str | None = None,
        subfolder: str = "",
        allow_download: bool = False,
        **kwargs: Any,
    ) -> IPAdapterGenerator:
        """Build the pipeline, load the adapter, and the CLIP image encoder from ``image_encoder``
        (default: ``<adapter>/image_encoder`` or ``<adapter>/models/image_encoder`` as in h94/IP-Adapter)."""
        from ._diffusers import load_pipeline

        pipe = load_pipeline(pipeline_class, model_id_or_folder, allow_download=allow_download)
        root = Path(adapter).expanduser()
        root = root.parent if root.is_file() else root
        candidates = (
            [Path(image_encoder)] if image_encoder else [root / "image_encoder", root / "models" / "image_encoder"]
        )
        folder = next((c for c in candidates if (c / "config.json").exists()), candidates[0])
        encoder = HFImageEncoder.from_pretrained(str(folder), layer=layer)
        return cls(
            pipe,
            encoder=encoder,
            adapter=adapter,
            weight_name=weight_name,
            subfolder=subfolder,
            model_id=str(model_id_or_folder),
            **kwargs,
        )

    @property
    def model_id(self) -> str:
        if self._model_id:
            return self._model_id
        from ._diffusers import model_id_of

        return model_id_of(self.pipeline, f"{self.name}:unknown")

    # --- prepare --------------------------------------------------------------------------------
    def _entities(self, result: Any) -> list[Any]:
        hits = ordered_characters(result)
        if self.include_location and result.location is not None:
            hits.append(result.location)
        return hits[: self.max_entities]

    def _pick(self, hit: Any) -> Any:
        """The reference to condition on: the first with an image."""
        return next((r for r in hit.references if r.image is not None), None)

    def _embed(self, refs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(positive N x ..., negative N x ...) for the chosen references; one batched encode."""
        if self.token_cache is not None:
            pos = self.token_cache.get_or_compute(refs, self.encoder)
        else:
            pos = list(self.encoder.encode([r.pil() for r in refs]))
        pos_arr = np.stack([np.asarray(p, dtype=np.float32) for p in pos])
        negative = getattr(self.encoder, "negative", None)  # encoders without one get diffusers' zeros
        neg_one = np.asarray(negative(), dtype=np.float32) if negative else np.zeros(pos_arr.shape[1:], np.float32)
        neg = np.broadcast_to(neg_one, pos_arr.shape).copy()
        return pos_arr, neg

    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        chosen = [(h, self._pick(h)) for h in self._entities(result)]
        chosen = [(h, r) for h, r in chosen if r is not None]
        hits = [h for h, _ in chosen]
        refs = [r for _, r in chosen]
        boxes = regions_for(shot, hits)
        entities = [
            ConditionedEntity(
                h.entity.name,
                h.entity.id,
                h.entity.kind,
                (r.id,),
                scale=self._scale_for(h, shot),
                region=box,
                description=h.entity.description,
            )
            for (h, r), box in zip(chosen, boxes, strict=False)
        ]
        tensors: dict[str, Any] = {}
        if refs:
            pos, neg = self._embed(refs)
            tensors = {"image_embeds": pos, "negative_image_embeds": neg}
        use_masks = self.use_masks if self.use_masks is not None else (len(refs) > 1 or bool(shot.regions))
        masks = None
        if use_masks and refs:
            from ._diffusers import pipeline_size, size_multiple

            w, h = pipeline_size(shot, size_multiple(self.pipeline))
            masks = region_masks(boxes, w, h)
        return Conditioning(
            self.name,
            shot.prompt,
            shot.negative_prompt,
            entities=entities,
            tensors=tensors,
            scales={e.name: e.scale for e in entities},
            masks=masks,
            options={"encoder": getattr(self.encoder, "spec", None), "masked": masks is not None},
        )

    def _scale_for(self, hit: Any, shot: ShotSpec) -> float:
        """The shot's own scale for this entity, else the adapter's per-entity scale, else its scale."""
        for table in (shot.scales or {}, self.scales):
            scales = {k.casefold(): float(v) for k, v in table.items()}  # the dict may be replaced later
            for name in hit.entity.names:
                if name.casefold() in scales:
                    return scales[name.casefold()]
        return self.scale

    # --- generate -------------------------------------------------------------------------------
    def _unconditional_embeds(self) -> Any:
        """Zero embeddings of the right width for a shot with no entity (the UNet requires some)."""
        import torch

        layer = self.pipeline.unet.encoder_hid_proj.image_projection_layers[0]
        dim = next(m for m in layer.modules() if isinstance(m, torch.nn.Linear)).in_features
        return np.zeros((1, dim), dtype=np.float32)

    def _pipeline_kwargs(self, conditioning: Conditioning) -> dict[str, Any]:
        import torch
        from diffusers.image_processor import IPAdapterMaskProcessor

        pos = conditioning.tensors.get("image_embeds")
        if pos is None or len(pos) == 0:
            pos = self._unconditional_embeds()
            neg = pos
            scales: list[float] = [0.0]
        else:
            neg = conditioning.tensors["negative_image_embeds"]
            scales = [e.scale for e in conditioning.entities]
        unet = self.pipeline.unet
        dtype = unet.dtype
        # (2, N, ...): negative then positive, as diffusers' prepare_ip_adapter_image_embeds expects
        # under classifier-free guidance; without guidance only the positive half is passed.
        from ._diffusers import guidance_of

        guided = guidance_of(self.pipeline, self.guidance_scale) > 1.0
        pos_t = torch.from_numpy(np.asarray(pos))[None]
        embeds = torch.cat([torch.from_numpy(np.asarray(neg))[None], pos_t]) if guided else pos_t
        kwargs: dict[str, Any] = {"ip_adapter_image_embeds": [embeds.to(device=unet.device, dtype=dtype)]}
        if conditioning.masks is not None:
            from PIL import Image

            mask_images = [Image.fromarray((m * 255).astype(np.uint8)) for m in conditioning.masks]
            h, w = conditioning.masks.shape[1:]
            masks = IPAdapterMaskProcessor().preprocess(mask_images, height=h, width=w)
            masks = masks.reshape(1, masks.shape[0], masks.shape[2], masks.shape[3])
            kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": [masks]}
            self.pipeline.set_ip_adapter_scale([scales])  # one scale per image-mask pair
        else:
            # Unmasked images of one adapter share a scale (diffusers applies one per adapter).
            self.pipeline.set_ip_adapter_scale(float(np.mean(scales)))
        return kwargs

    def call_arguments(self, shot: ShotSpec, conditioning: Conditioning) -> dict[str, Any]:
        """``prompt``, ``negative_prompt``, size and the IP-Adapter image embeddings (from the token
        cache) with masks and scales set on the pipeline: ``pipe(**kwargs)`` for an image pipeline."""
        args = {k: v for k, v in super().call_arguments(shot, conditioning).items() if k != "num_frames"}
        return {**args, **self._pipeline_kwargs(conditioning)}

    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
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
            **self._pipeline_kwargs(conditioning),
        )
        return ShotOutput(frames, shot.fps, self.metadata(shot, conditioning, seed, **facts))
