"""open_clip embedder: whole-image and text vectors in one space, plus the image tokens IP-Adapter reads.

Weights are named as open_clip names them: an architecture (``model="ViT-B-32"``) and a
``pretrained`` tag (``"laion2b_s34b_b79k"``) or a local ``.pt``/``.safetensors`` file. Nothing is
downloaded at run time: a tag is looked up in the local Hugging Face cache (or open_clip's URL
cache) first, and a missing file is a :class:`MissingWeightsError` that says where we looked.
``pretrained=None`` builds the architecture with seeded random weights (tests, speed figures).
``config_dir`` is a folder of extra architecture JSONs (open_clip's own format) registered with
``open_clip.add_model_config``, so a tiny architecture can be used without touching open_clip.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PrivateAttr

from ..errors import EmbedderError, MissingExtraError, MissingWeightsError
from .base import Embedder, Embedding, normalize_rows, register_embedder

WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}
_REGISTERED_CONFIG_DIRS: set[str] = set()


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise MissingExtraError(
            "open_clip is not installed; install the extra: pip install 'continuity[clip]'"
        ) from None
    return open_clip


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when torch sees a GPU, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # open_clip warns on the root logger that random weights are random: that is what was asked.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _is_path(value: str) -> bool:
    return Path(value).suffix.lower() in WEIGHT_SUFFIXES or "/" in value or os.sep in value


@register_embedder("open-clip")
class OpenClipEmbedder(Embedder):
    """An open_clip model. Vectors are the L2-normalised pooled (projected) image/text features."""

    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    config_dir: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0  # only for pretrained=None: random weights are the same in every process

    _preprocess: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)

    # --- naming -------------------------------------------------------------------------------
    @property
    def weights_label(self) -> str:
        if not self.pretrained:
            return f"random-seed{self.seed}"
        return Path(self.pretrained).name if _is_path(self.pretrained) else self.pretrained

    @property
    def spec(self) -> str:
        return f"open-clip:{self.model}:{self.weights_label}"

    @property
    def ndims(self) -> int:
        cfg = self._model_config()
        return int(cfg["embed_dim"])

    @property
    def has_text(self) -> bool:
        return True

    # --- loading ------------------------------------------------------------------------------
    def _register_configs(self) -> None:
        if not self.config_dir:
            return
        folder = Path(self.config_dir).expanduser().resolve()
        if not folder.is_dir():
            raise EmbedderError(f"config_dir {folder} is not a folder; give a folder of open_clip model JSONs")
        if str(folder) not in _REGISTERED_CONFIG_DIRS:
            _open_clip().add_model_config(folder)
            _REGISTERED_CONFIG_DIRS.add(str(folder))

    def _model_config(self) -> dict[str, Any]:
        open_clip = _open_clip()
        self._register_configs()
        cfg = open_clip.get_model_config(self.model)
        if cfg is None:
            known = ", ".join(open_clip.list_models()[:12])
            raise EmbedderError(
                f"open_clip has no architecture {self.model!r}; expected a name like {known}, ... "
                "(or add its JSON to a folder given as config_dir)"
            )
        return cfg

    def resolve_weights(self) -> tuple[str | None, dict[str, Any]]:
        """(local weights file or None for random weights, the tag's preprocessing config).

        Never downloads: a tag must already be in the Hugging Face cache or open_clip's URL cache."""
        if not self.pretrained:
            return None, {}
        open_clip = _open_clip()
        if _is_path(self.pretrained):
            path = Path(self.pretrained).expanduser()
            if path.is_file():
                return str(path), {}
            raise MissingWeightsError(
                f"open_clip weights for {self.model} not found: no file at {path}; "
                "pass pretrained=/path/to/weights.safetensors of a file that exists"
            )
        cfg = open_clip.get_pretrained_cfg(self.model, self.pretrained)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(self.model)
            raise EmbedderError(
                f"open_clip has no pretrained tag {self.pretrained!r} for {self.model}; "
                f"expected one of {tags or '(none for this architecture)'} or a local weights file"
            )
        looked: list[str] = []
        if cfg.get("file"):
            if Path(cfg["file"]).is_file():
                return cfg["file"], cfg
            looked.append(cfg["file"])
        if cfg.get("hf_hub"):
            from huggingface_hub import try_to_load_from_cache
            from huggingface_hub.constants import HF_HUB_CACHE

            repo, filename = os.path.split(cfg["hf_hub"])
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            if filename.endswith((".bin", ".pth")):
                names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
            for name in names:
                hit = try_to_load_from_cache(repo, name, cache_dir=self.cache_dir)
                if isinstance(hit, str) and Path(hit).is_file():
                    return hit, cfg
            looked.append(f"{self.cache_dir or HF_HUB_CACHE} (Hugging Face cache of {repo}: {', '.join(names)})")
        if cfg.get("url"):
            target = Path(self.cache_dir or "~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
            if target.is_file():
                return str(target), cfg
            looked.append(str(target))
        raise MissingWeightsError(
            f"open_clip weights {self.model}/{self.pretrained} are not on this machine (looked in: {'; '.join(looked)}); "
            "nothing is downloaded at run time: download them once and pass pretrained=/path/to/open_clip_model.safetensors"
        )

    def load(self) -> Any:
        """Load (once) and return the model; its preprocessing goes to ``self._preprocess``."""
        if self._model is not None:
            return self._model
        import torch

        open_clip = _open_clip()
        self._model_config()  # registers config_dir and checks the name
        path, cfg = self.resolve_weights()
        device = resolve_device(self.device)
        kwargs: dict[str, Any] = {}
        for ours, theirs in (
            ("image_mean", "mean"),
            ("image_std", "std"),
            ("image_interpolation", "interpolation"),
            ("image_resize_mode", "resize_mode"),
        ):
            if cfg.get(theirs) is not None:
                kwargs[ours] = cfg[theirs]
        if cfg.get("quick_gelu"):
            kwargs["force_quick_gelu"] = True
        with torch.random.fork_rng(devices=[]), _quiet_root_logger():
            torch.manual_seed(self.seed)  # random weights (pretrained=None) are reproducible
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.model,
                pretrained=path,
                device=device,
                precision=self.precision,
                pretrained_text=False,
                **kwargs,
            )
        model.eval()
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = None
        return model

    def _pixels(self, images: Sequence[Any]) -> Any:
        import torch

        model = self.load()
        param = next(model.parameters())
        batch = torch.stack([self._preprocess(img.convert("RGB")) for img in images])
        return batch.to(device=param.device, dtype=param.dtype)

    # --- embedding ----------------------------------------------------------------------------
    def image_features(self, images: Sequence[Any], *, normalize: bool = True) -> np.ndarray:
        """(N, embed_dim) pooled, projected image features; ``normalize=False`` gives them raw,
        as IP-Adapter's base image projection expects."""
        import torch

        model = self.load()
        out = []
        for start in range(0, len(images), max(1, self.batch_size)):
            with torch.inference_mode():
                feats = model.encode_image(self._pixels(images[start : start + self.batch_size]))
            out.append(feats.float().cpu().numpy())
        arr = np.concatenate(out) if out else np.zeros((0, self.ndims), np.float32)
        return normalize_rows(arr) if normalize else arr.astype(np.float32)

    def _embed_batch(self, images: Sequence[Any]) -> list[Embedding]:
        return [Embedding(vector=v) for v in self.image_features(images)]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model = self.load()
        if self._tokenizer is None:
            self._tokenizer = _open_clip().get_tokenizer(self.model)
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(texts), max(1, self.batch_size)):
            tokens = self._tokenizer(list(texts[start : start + self.batch_size])).to(device)
            with torch.inference_mode():
                out.append(model.encode_text(tokens).float().cpu().numpy())
        return normalize_rows(np.concatenate(out)) if out else np.zeros((0, self.ndims), np.float32)

    def image_tokens(self, images: Sequence[Any], *, layer: int = -2) -> np.ndarray:
        """(N, 1 + patches, width): the hidden states after transformer block ``layer`` (the
        penultimate by default), class token first, before the final norm: what IP-Adapter Plus
        reads (Hugging Face CLIPVision ``hidden_states[-2]``)."""
        self.load()
        out = [
            self.tokens_from_pixels(self._pixels(images[start : start + self.batch_size]), layer=layer)
            for start in range(0, len(images), max(1, self.batch_size))
        ]
        if not out:
            return np.zeros((0, 0, 0), np.float32)
        return np.concatenate(out)

    def tokens_from_pixels(self, pixels: Any, *, layer: int = -2) -> np.ndarray:
        """:meth:`image_tokens` of already preprocessed pixel values (N, 3, H, W)."""
        import torch

        visual = self.load().visual
        if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
            raise EmbedderError(f"{self.model} has no ViT image tower; image tokens need a ViT architecture")
        index = layer % len(visual.transformer.resblocks)
        with torch.inference_mode():
            res = visual.forward_intermediates(
                pixels,
                indices=[index],
                stop_early=True,
                intermediates_only=True,
                output_fmt="NLC",
                output_extra_tokens=True,
            )
            tokens = torch.cat([res["image_intermediates_prefix"][0], res["image_intermediates"][0]], dim=1)
        return tokens.float().cpu().numpy()

    def negative_pixels(self, count: int = 1) -> Any:
        """Zero pixel values (after normalisation), diffusers' unconditional image for Plus adapters."""
        import torch

        model = self.load()
        size = model.visual.image_size
        h, w = (size, size) if isinstance(size, int) else size
        param = next(model.parameters())
        return torch.zeros((count, 3, h, w), device=param.device, dtype=param.dtype)
