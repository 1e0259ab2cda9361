"""Adapter overhead: each generator's prepare() time against its generate() time.

prepare() is this project's work (choose references, decode, crop, encode or read cached
conditioning); generate() is the backbone. The diffusers pipelines here are TINY RANDOM-WEIGHT
ones from ``generators.testing`` (32x32 SD-shaped UNet, 16x16 Wan-shaped transformers, 2 steps),
so generate() times are far below real models and the ratio only says that prepare() is not the
bottleneck; real-model generate() is seconds to minutes per shot. The animatic generator needs no
weights, so its figures are its real cost at the size given. ``ip-adapter+token-cache`` is the
product's cache: ``memstore.tokens.TokenCache`` on a real store's ``tokens`` table (the shot's
references registered in it), as ``story run --generator ip-adapter`` builds it; after the warm-up
call every timed prepare() is a cache hit. Its figures at 10,000 rows, and cold against warm, are
in ``benchmarks/bench_conditioning.py``.

Run: ``python benchmarks/bench_adapters.py [--repeats N]``; writes benchmarks/results/adapters.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
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


def stored_result(tmp: Path, prompt: str) -> tuple[Any, Any]:
    """(the sample shot's RetrievalResult with its entities registered in a real store, that
    library's TokenCache): the token cache only serves references of its own library."""
    from memstore.store import Store
    from memstore.tokens import TokenCache

    library = Store.init(tmp / "db").library("bench")
    library.configure(embedders=[])
    sample = T.sample_result(prompt)
    hits = []
    for hit in sample.hits:
        images = [r.pil() for r in hit.references]
        entity = library.register(hit.entity.name, hit.entity.kind, images=images, description=hit.entity.description)
        refs = tuple(library.references(entity, with_images=True, with_vectors=False))
        hits.append(dataclasses.replace(hit, entity=entity, references=refs))
    return dataclasses.replace(sample, hits=tuple(hits)), TokenCache(library)


def build(name: str, tmp: Path) -> tuple[Any, ShotSpec, dict[str, Any]]:
    """(generator, shot, notes) with tiny pipelines; notes["result"], when set, replaces the sample result."""
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
    if name in ("ip-adapter", "ip-adapter+token-cache"):
        from generators.ip_adapter import HFImageEncoder, IPAdapterGenerator

        pipe = T.tiny_sd_pipeline()
        model, processor = T.tiny_clip_image_encoder()
        result, cache = stored_result(tmp, small.prompt) if name.endswith("cache") else (None, None)
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
                "token_cache": "TokenCache on the store's tokens table, warm" if cache else "none",
                **({"result": result} if result is not None else {}),
            },
        )
    if name == "faceid":
        from generators.faceid import FaceIDGenerator

        pipe = T.tiny_sd_pipeline()
        folder = tmp / "faceid"
        T.save_adapter(T.tiny_faceid_state_dict(pipe.unet), folder, "faceid.safetensors")
        return (
            FaceIDGenerator(
                pipe,
                adapter=folder,
                weight_name="faceid.safetensors",
                face_column="face_arcface",  # the column sample_result fills
                num_inference_steps=2,
            ),
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
    names = ["animatic", "prompt", "ip-adapter", "ip-adapter+token-cache", "faceid", "wan-vace", "wan-m2v"]
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in names:
            gen, shot, notes = build(name, Path(tmpdir))
            result = notes.pop("result", None) or T.sample_result(shot.prompt, memory=5 if name == "wan-m2v" else 2)
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
        "command": "python benchmarks/bench_adapters.py " + " ".join(sys.argv[1:]),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "uncommitted_changes": bool(
            subprocess.run(
                [
                    "git",
                    "status",
                    "--porcelain",
                    "--",
                    "benchmarks/bench_adapters.py",
                    "generators",
                    "memstore/tokens.py",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        ),
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
