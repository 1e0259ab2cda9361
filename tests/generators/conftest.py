"""Shared fixtures for generator tests: tiny random pipelines (no downloads), in-memory results."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def torch_threads():
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="session")
def wan_parts(torch_threads):
    """The text encoder, tokenizer and VAE of a tiny Wan pipeline, built once (seconds each)."""
    from generators.testing import tiny_t5_tokenizer, tiny_umt5, tiny_wan_vae

    return {"tokenizer": tiny_t5_tokenizer(), "text_encoder": tiny_umt5(0), "vae": tiny_wan_vae(0)}


@pytest.fixture
def two_expert_wan(wan_parts):
    """A Wan2.2-A14B-shaped memory-to-video pipeline: a high-noise ``transformer`` and a low-noise
    ``transformer_2`` (different random weights) switched at t = 900, as StoryMem uses it.
    Fresh transformers for every test (LoRA tests change them); the other parts are shared."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from generators.testing import _ready, tiny_wan_transformer
    from generators.wan_m2v import WanMemoryToVideoPipeline

    pipe = WanMemoryToVideoPipeline(
        **wan_parts,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=tiny_wan_transformer(36, 0),
        transformer_2=tiny_wan_transformer(36, 1),
        boundary_ratio=0.9,  # StoryMem's boundary; 4 steps (t = 1000, 910, 717, 24) give each expert two
    )
    return _ready(pipe)
