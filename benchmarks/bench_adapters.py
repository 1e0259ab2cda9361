"""Adapter overhead: each generator's prepare() time against its generate() time.

prepare() is this project's work (choose references, decode, crop, encode or read cached
conditioning); generate() is the backbone. The diffusers pipelines here are TINY RANDOM-WEIGHT
ones from ``generators.testing`` (32x32 SD-shaped UNet, 16x16 Wan-shaped transformers, 2 steps),
so generate() times are far below real models and the ratio only says that prepare() is not the
bottleneck; real-model generate() is seconds to minutes per shot. The animatic generator needs no
weights, so its figures are its real cost at the size given.

Run: ``python benchmarks/bench_adapters.py [--repeats N]``; writes benchmarks/results/adapters.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from generators import ShotSpec  # noqa: E402 - after the offline environment is set
from generators import testing as T  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "adapters.json"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds over ``repeats`` calls (after one warm-up call) and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def build(name: str, tmp: Path) -> tuple[Any, ShotSpec, dict[str, Any]]:
    """(generator, shot, notes) with tiny pipelines."""
    if name == "animatic":
        from generators.animatic import AnimaticGenerator

        return (
            AnimaticGenerator(),
            ShotSpec("Aria and Bram argue in the harbor at dusk", num_frames=24, width=640, height=360, shot_index=3),
            {"weights": "none"},
        )
    small = ShotSpec("Aria and Bram argue in the harbor at dusk", num_frames=5, width=32, height=32)
    if name == "prompt":
        from generators.prompt import PromptGenerator

        return PromptGenerator(T.tiny_sd_pipeline(), num_inference_steps=2), small, {"pipeline": "tiny SD 1.5-shaped"}
    if name in ("ip-adapter", "ip-adapter+cache"):
        from generators.ip_adapter import HFImageEncoder, IPAdapterGenerator

        pipe = T.tiny_sd_pipeline()
        model, processor = T.tiny_clip_image_encoder()
        cache = T.DictTokenCache() if name.endswith("cache") else None
        gen = IPAdapterGenerator(
            pipe,
            encoder=HFImageEncoder(model, processor),
            token_cache=cache,
            adapter=T.tiny_ip_adapter_state_dict(pipe.unet),
            num_inference_steps=2,
        )
        return (
            gen,
            small,
            {
                "pipeline": "tiny SD 1.5-shaped + tiny IP-Adapter",
                "encoder": "tiny CLIP vision (32 px)",
                "token_cache": "warm" if cache else "none",
            },
        )
    if name == "faceid":
        from generators.faceid import FaceIDGenerator

        pipe = T.tiny_sd_pipeline()
        folder = tmp / "faceid"
        T.save_adapter(T.tiny_faceid_state_dict(pipe.unet), folder, "faceid.safetensors")
        return (
            FaceIDGenerator(pipe, adapter=folder, weight_name="faceid.safetensors", num_inference_steps=2),
            small,
            {"pipeline": "tiny SD 1.5-shaped + tiny FaceID adapter", "encoder": "stored vectors"},
        )
    wan_shot = ShotSpec("Aria walks along the harbor", num_frames=9, width=16, height=16)
    if name == "wan-vace":
        from generators.wan_vace import WanVACEGenerator

        return (
            WanVACEGenerator(T.tiny_wan_vace_pipeline(), num_inference_steps=2),
            wan_shot,
            {"pipeline": "tiny Wan VACE"},
        )
    if name == "wan-m2v":
        from generators.wan_m2v import WanM2VGenerator

        return (
            WanM2VGenerator(T.tiny_wan_i2v_pipeline(), num_inference_steps=2),
            wan_shot,
            {"pipeline": "tiny Wan I2V (36 channels)", "memory_frames": 5},
        )
    raise ValueError(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    names = ["animatic", "prompt", "ip-adapter", "ip-adapter+cache", "faceid", "wan-vace", "wan-m2v"]
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in names:
            gen, shot, notes = build(name, Path(tmpdir))
            result = T.sample_result(shot.prompt, memory=5 if name == "wan-m2v" else 2)
            prep_s, cond = timed(lambda g=gen, s=shot, r=result: g.prepare(s, r), args.repeats)
            gen_s, out = timed(lambda g=gen, s=shot, c=cond: g.generate(s, c, 0), args.repeats)
            rows.append(
                {
                    "adapter": name,
                    "prepare_ms": round(prep_s * 1000, 3),
                    "generate_ms": round(gen_s * 1000, 3),
                    "prepare_share": round(prep_s / (prep_s + gen_s), 4),
                    "frames": int(out.frames.shape[0]),
                    "size": [shot.width, shot.height],
                    **notes,
                }
            )
    report = {
        "benchmark": "adapters: prepare() vs generate()",
        "pipelines": "tiny random-weight diffusers pipelines built from configs (generators.testing); "
        "generate() times are NOT representative of real models, only prepare() overhead is",
        "repeats": args.repeats,
        "statistic": "median seconds after one warm-up call",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'adapter':<18}{'prepare ms':>12}{'generate ms':>13}{'prepare %':>11}  frames  size")
    for r in rows:
        print(
            f"{r['adapter']:<18}{r['prepare_ms']:>12.2f}{r['generate_ms']:>13.2f}{100 * r['prepare_share']:>10.1f}%"
            f"  {r['frames']:>6}  {r['size'][0]}x{r['size'][1]}"
        )
    print(f"(tiny random-weight pipelines; wrote {RESULTS.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
