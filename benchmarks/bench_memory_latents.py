"""The memory-to-video adapter's latent cache (issue 12, item 5): ``WanM2VGenerator.prepare()`` with
10 memory keyframes, re-encoded through the VAE (cache cold: what every shot paid before the
cache) vs read from the store's token cache (warm: every later shot and run).

The VAE is diffusers' ``AutoencoderKLWan`` at its default configuration, which is the Wan2.1 VAE
that Wan2.2-I2V-A14B uses (127 M parameters; base_dim 96, z_dim 16), with RANDOM weights: no
weights can be downloaded here, and the encode cost depends on the architecture and the pixel
count, not on the weight values. The transformer and text encoder are tiny (prepare() never runs
them). CPU only (this machine has no GPU), so frames are small (``--size``, default 96x160): the
cold figure scales with the pixels; the warm one does not depend on the VAE at all.

    python benchmarks/bench_memory_latents.py                  # 10 frames at 96x160 (minutes)
    python benchmarks/bench_memory_latents.py --size 240x416   # slower, closer to a real shot
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = ROOT / "benchmarks" / "results" / "memory_latents.json"


def real_size_pipeline() -> Any:
    """A Wan memory-to-video pipeline whose VAE has the real Wan2.1/2.2 architecture (random weights)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from generators.testing import tiny_t5_tokenizer, tiny_umt5, tiny_wan_transformer
    from generators.wan_m2v import WanMemoryToVideoPipeline

    torch.manual_seed(0)
    pipe = WanMemoryToVideoPipeline(
        tokenizer=tiny_t5_tokenizer(),
        text_encoder=tiny_umt5(0),
        vae=AutoencoderKLWan().eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=tiny_wan_transformer(36, 0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def memory_result(library: Any, count: int, size: tuple[int, int]) -> Any:
    """A shot's retrieval result carrying ``count`` harvested keyframes of an earlier shot."""
    from generators.testing import pattern
    from retrieval.query import RetrievalResult, ShotQuery

    height, width = size
    library.register("Aria", "character", images=[pattern(1, (height, width))])
    frames = [pattern(100 + i, (height, width), face=False) for i in range(count)]
    refs = library.add_images("Aria", frames, source="harvested", story="s", shot=0, frames=list(range(count)))
    memory = tuple(library.references(ids=[r.id for r in refs], with_images=True))
    return RetrievalResult(ShotQuery("Aria", story_id="s", shot_index=1), memory=memory)


def measure(frames: int, size: tuple[int, int], warm_repeats: int) -> dict[str, Any]:
    import torch

    from generators import ShotSpec
    from generators.wan_m2v import WanM2VGenerator
    from memstore import Store
    from memstore.tokens import TokenCache

    torch.set_num_threads(os.cpu_count() or 1)
    height, width = size
    with tempfile.TemporaryDirectory() as tmp:
        library = Store.init(Path(tmp) / "db").library("default")
        result = memory_result(library, frames, size)
        pipe = real_size_pipeline()
        generator = WanM2VGenerator(pipe, max_memory=frames, token_cache=TokenCache(library, dtype="float32"))
        shot = ShotSpec("Aria walks along the harbor", num_frames=5, width=width, height=height)
        started = time.perf_counter()
        cold = generator.prepare(shot, result)
        cold_s = time.perf_counter() - started
        warm = []
        for i in range(warm_repeats):
            later = ShotSpec(shot.prompt, num_frames=5, width=width, height=height, shot_index=2 + i)
            started = time.perf_counter()
            again = generator.prepare(later, result)
            warm.append(time.perf_counter() - started)
        same = bool((again.tensors["memory_latents"] == cold.tensors["memory_latents"]).all())
        params = sum(p.numel() for p in pipe.vae.parameters())
    return {
        "memory_frames": frames,
        "frame_size_hxw": [height, width],
        "vae": {
            "class": "AutoencoderKLWan",
            "config": "diffusers default (Wan2.1 VAE, used by Wan2.2-I2V-A14B)",
            "parameters": params,
            "weights": "random (none can be downloaded here)",
        },
        "latents_shape": list(cold.tensors["memory_latents"].shape),
        "prepare_cold_s": round(cold_s, 3),
        "prepare_cold_per_frame_s": round(cold_s / frames, 3),
        "prepare_warm_ms_median": round(statistics.median(warm) * 1000, 2),
        "warm_repeats": warm_repeats,
        "speedup": round(cold_s / statistics.median(warm), 1),
        "warm_equals_cold": same,
    }


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="96x160", help="memory frame HxW")
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    figures = measure(args.frames, (height, width), args.warm)
    record = {
        "command": "python benchmarks/bench_memory_latents.py " + " ".join(argv or sys.argv[1:]),
        "git_commit": commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
