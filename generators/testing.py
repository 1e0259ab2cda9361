"""Tiny random-weight pipelines and in-memory retrieval results, for tests and benchmarks.

Nothing here downloads: tokenizers are built from vocabularies written in code, models from
configs with tiny sizes (diffusers' own tests use the same shapes). The pictures these pipelines
make are noise; what they prove is wiring, determinism and where conditioning lands.
Torch and diffusers are imported inside the builders, so importing this module stays light.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memstore.schema import Entity, Reference
from retrieval.query import Hit, RetrievalResult, ShotQuery


def mean_abs(a: Any, b: Any) -> float:
    """Mean absolute difference of two frame stacks, in uint8 levels."""
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


# --- in-memory blueprints ----------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_reference(
    entity: Entity,
    array: np.ndarray,
    *,
    face_box: Sequence[float] | None = None,
    vectors: dict[str, np.ndarray] | None = None,
    ref_id: str | None = None,
    source: str = "registered",
    story: str | None = None,
    shot: int | None = None,
) -> Reference:
    data = png_bytes(array)
    kwargs: dict[str, Any] = {}
    if ref_id:
        kwargs["id"] = ref_id
    return Reference(
        entity_id=entity.id,
        kind=entity.kind,
        image=data,
        width=int(array.shape[1]),
        height=int(array.shape[0]),
        sha256=hashlib.sha256(data).hexdigest(),
        face_box=list(face_box) if face_box else None,
        vectors=dict(vectors or {}),
        source=source,
        story=story,
        shot=shot,
        **kwargs,
    )


def pattern(seed: int, size: tuple[int, int] = (96, 128), *, face: bool = True) -> np.ndarray:
    """A reproducible picture: a coloured field with stripes and, optionally, a face-like disc."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(40, 220, size=3)
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), dtype=np.float32)
    freq = rng.uniform(0.05, 0.2)
    for c in range(3):
        img[..., c] = base[c] + 35 * np.sin(freq * (x * (c + 1) + y * rng.uniform(0.2, 1.0)))
    if face:
        cy, cx, r = h * 0.35, w * 0.5, min(h, w) * 0.18
        disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        img[disc] = rng.integers(150, 240, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def face_box_of(size: tuple[int, int] = (96, 128)) -> list[float]:
    h, w = size
    r = min(h, w) * 0.18
    return [w * 0.5 - r, h * 0.35 - r, w * 0.5 + r, h * 0.35 + r]


def sample_result(
    prompt: str = "Aria and Bram argue in the harbor at dusk",
    *,
    characters: Sequence[tuple[str, str, int]] = (
        ("Aria", "a red-haired knight with a scar across her cheek", 1),
        ("Bram", "a tall old fisherman in a yellow oilskin coat", 2),
    ),
    location: tuple[str, str, int] | None = ("Harbor", "a foggy stone harbor at dusk", 3),
    face_dim: int = 16,
    memory: int = 0,
    cast: Sequence[str] | None = None,
    story_id: str = "story",
) -> RetrievalResult:
    """A RetrievalResult built without a store: one reference per entity, face vectors included."""
    hits = []
    for i, (name, desc, seed) in enumerate(characters):
        ent = Entity(kind="character", name=name, description=desc)
        vec = np.random.default_rng(seed + 1000).standard_normal(face_dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        ref = make_reference(ent, pattern(seed), face_box=face_box_of(), vectors={"face_arcface": vec})
        hits.append(Hit(ent, 1.0 - 0.1 * i, ("named in prompt",), (ref,)))
    if location:
        name, desc, seed = location
        ent = Entity(kind="location", name=name, description=desc)
        ref = make_reference(ent, pattern(seed, (120, 200), face=False))
        hits.append(Hit(ent, 0.5, ("named in prompt",), (ref,)))
    mem = []
    if memory:
        anchor = hits[0].entity if hits else Entity(kind="character", name="Nobody")
        for j in range(memory):
            mem.append(
                make_reference(
                    anchor, pattern(100 + j, (72, 128), face=False), source="harvested", story=story_id, shot=j
                )
            )
    query = ShotQuery(prompt=prompt, story_id=story_id, shot_index=len(mem), cast=tuple(cast) if cast else None)
    return RetrievalResult(
        query=query, hits=tuple(hits), memory=tuple(mem), memory_reasons=tuple("recent" for _ in mem)
    )


# --- tokenizers built in code -----------------------------------------------------------------


def tiny_clip_tokenizer(model_max_length: int = 77):
    """A character-level CLIP BPE tokenizer: every byte-level character is a token (with and
    without the end-of-word suffix), no merges. 515 tokens."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + chars + [c + "</w>" for c in chars])}
    return CLIPTokenizer(
        vocab=vocab, merges=[], model_max_length=model_max_length, unk_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def tiny_t5_tokenizer(model_max_length: int = 64):
    """A character-level T5 (Unigram) tokenizer: ASCII letters, digits and punctuation."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-":
        pieces.append((ch, -3.0))
        pieces.append(("▁" + ch, -3.5))
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


# --- Stable Diffusion 1.5-shaped pipeline -----------------------------------------------------

CROSS_DIM = 32


def tiny_sd_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS_DIM,
        norm_num_groups=4,
        attention_head_dim=4,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=4,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=CROSS_DIM,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=520,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tiny_clip_tokenizer(),
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def tiny_sd_pipeline(seed: int = 0):
    """A StableDiffusionPipeline (IPAdapterMixin) with random tiny weights; 2 steps make 32x32 in ~0.1 s."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**tiny_sd_components(seed), requires_safety_checker=False)
    return _ready(pipe)


def tiny_animatediff_pipeline(seed: int = 0):
    """An AnimateDiffPipeline (IPAdapterMixin, makes videos): the tiny SD parts plus a tiny MotionAdapter."""
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter

    components = tiny_sd_components(seed)
    components.pop("safety_checker")
    torch.manual_seed(seed)
    motion = MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
        use_motion_mid_block=False,
    )
    return _ready(AnimateDiffPipeline(motion_adapter=motion, **components))


def tiny_clip_image_encoder(seed: int = 0, image_size: int = 32, projection_dim: int = 16):
    """A CLIPVisionModelWithProjection plus a matching CLIPImageProcessor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            projection_dim=projection_dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            intermediate_size=24,
            patch_size=8,
        )
    ).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return model, processor


def _unet_cross_attn_hidden_sizes(unet: Any) -> list[int]:
    """Hidden size of each cross-attention processor, in the order diffusers numbers IP weights."""
    sizes = []
    blocks = list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name:
            continue
        if name.startswith("mid_block"):
            sizes.append(blocks[-1])
        elif name.startswith("up_blocks"):
            sizes.append(list(reversed(blocks))[int(name[len("up_blocks.")])])
        else:
            sizes.append(blocks[int(name[len("down_blocks.")])])
    return sizes


def _ip_layers(unet: Any, seed: int, std: float) -> dict[str, Any]:
    """``ip_adapter`` part: to_k_ip/to_v_ip per cross-attention, numbered 1, 3, 5, ... as diffusers expects."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    out = {}
    for i, hidden in enumerate(_unet_cross_attn_hidden_sizes(unet)):
        key = 2 * i + 1
        out[f"{key}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=gen) * std
        out[f"{key}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=gen) * std
    return out


def tiny_ip_adapter_state_dict(unet: Any, image_embed_dim: int = 16, seed: int = 0, std: float = 0.5) -> dict[str, Any]:
    """A base IP-Adapter (ImageProjection: 4 tokens from one CLIP image embedding)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    cross = unet.config.cross_attention_dim
    image_proj = {
        "proj.weight": torch.randn(cross * 4, image_embed_dim, generator=gen) * 0.5,
        "proj.bias": torch.zeros(cross * 4),
        "norm.weight": torch.ones(cross),
        "norm.bias": torch.zeros(cross),
    }
    return {"image_proj": image_proj, "ip_adapter": _ip_layers(unet, seed, std)}


def tiny_faceid_state_dict(
    unet: Any, id_dim: int = 16, mult: int = 2, seed: int = 0, std: float = 0.5
) -> dict[str, Any]:
    """An IP-Adapter FaceID (IPAdapterFaceIDImageProjection: MLP from a face vector to 4 tokens)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 2)
    cross = unet.config.cross_attention_dim
    image_proj = {
        "proj.0.weight": torch.randn(id_dim * mult, id_dim, generator=gen) * 0.5,
        "proj.0.bias": torch.zeros(id_dim * mult),
        "proj.2.weight": torch.randn(cross * 4, id_dim * mult, generator=gen) * 0.5,
        "proj.2.bias": torch.zeros(cross * 4),
        "norm.weight": torch.ones(cross),
        "norm.bias": torch.zeros(cross),
    }
    return {"image_proj": image_proj, "ip_adapter": _ip_layers(unet, seed, std)}


def save_adapter(state_dict: dict[str, Any], folder: str | Path, weight_name: str = "ip-adapter.safetensors") -> Path:
    """Write an adapter the way released IP-Adapter .safetensors files are laid out (prefixed keys)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = {f"{part}.{k}": v.contiguous() for part in ("image_proj", "ip_adapter") for k, v in state_dict[part].items()}
    save_file(flat, str(folder / weight_name))
    return folder / weight_name


# --- Wan-shaped pipelines ---------------------------------------------------------------------


def tiny_wan_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def tiny_umt5(seed: int = 0):  # dropout_rate 0: deterministic even if someone trains it
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    return UMT5EncoderModel(
        UMT5Config(
            vocab_size=200,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            dropout_rate=0.0,
        )
    ).eval()


def tiny_wan_transformer(in_channels: int, seed: int = 0, vace: bool = False):
    import torch
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    torch.manual_seed(seed)
    common: dict[str, Any] = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": in_channels,
        "out_channels": 16,
        "text_dim": 32,
        "freq_dim": 32,
        "ffn_dim": 32,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 32,
    }
    if vace:
        return WanVACETransformer3DModel(num_layers=3, vace_layers=[0, 2], vace_in_channels=96, **common)
    return WanTransformer3DModel(num_layers=2, **common)


def tiny_wan_i2v_pipeline(seed: int = 0):
    """A Wan2.2-style image-to-video pipeline (36 input channels, no CLIP image encoder)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from .wan_m2v import WanMemoryToVideoPipeline

    pipe = WanMemoryToVideoPipeline(
        tokenizer=tiny_t5_tokenizer(),
        text_encoder=tiny_umt5(seed),
        vae=tiny_wan_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=tiny_wan_transformer(36, seed),
    )
    return _ready(pipe)


def tiny_wan_vace_pipeline(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline

    pipe = WanVACEPipeline(
        tokenizer=tiny_t5_tokenizer(),
        text_encoder=tiny_umt5(seed),
        vae=tiny_wan_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=tiny_wan_transformer(16, seed, vace=True),
    )
    return _ready(pipe)


def _ready(pipe: Any) -> Any:
    """Eval mode (models built from configs start in training mode: dropout would make runs differ)."""
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


class CountingEncoder:
    """Wraps an encoder and counts encode() calls and images (to prove generate() never encodes)."""

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self.spec = encoder.spec
        self.calls = 0
        self.images = 0

    def encode(self, images: list[Any]) -> np.ndarray:
        self.calls += 1
        self.images += len(images)
        return self.encoder.encode(images)

    def negative(self) -> np.ndarray:
        return self.encoder.negative()


class DictTokenCache:
    """A minimal in-memory stand-in for memstore.tokens.TokenCache: (reference id, spec) -> array."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, references: list[Reference], encoder: Any) -> list[np.ndarray]:
        missing = [r for r in references if (r.id, encoder.spec) not in self.store]
        self.hits += len(references) - len(missing)
        self.misses += len(missing)
        if missing:
            out = encoder.encode([r.pil() for r in missing])
            for r, arr in zip(missing, out, strict=False):
                self.store[(r.id, encoder.spec)] = np.asarray(arr)
        return [self.store[(r.id, encoder.spec)] for r in references]
