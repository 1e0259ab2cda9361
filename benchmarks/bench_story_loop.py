"""The story loop at feature length: per-shot loop overhead, flatness, resume time and RSS.

A story of N shots (8 characters, 4 locations, one registered image each; cuts and continuations,
pronouns) runs through ``StoryRunner`` with a generator that returns 2 frames of 64x36 and costs
nothing, so what is timed is the loop itself. Per shot, everything outside generate() and the
shot's MP4 encode is the overhead; phases are timed by wrapping the loop's own calls (retrieve,
memory, prepare, write-back, provenance, record). Then the finished story is run again (a resume:
every shot's hash checked, nothing generated), and shot N/2 is changed to regenerate N/2 onward.

    python benchmarks/bench_story_loop.py                # 1,000 shots (minutes)
    python benchmarks/bench_story_loop.py --shots 10000  # the feature-length run (not in CI)
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
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import continuity.session as session_module  # noqa: E402 - after the path is set
from continuity.runner import RunConfig, StoryRunner  # noqa: E402
from continuity.story import parse_story  # noqa: E402
from generators import Conditioning, GeneratorAdapter, ShotOutput, ShotSpec  # noqa: E402
from memstore import Store  # noqa: E402

CHARACTERS = ["Aria", "Bram", "Cora", "Dell", "Esme", "Finn", "Gwen", "Hale"]
LOCATIONS = ["Harbor", "Forest", "Castle", "Market"]
RESULTS = ROOT / "benchmarks" / "results" / "story_loop.json"


class FreeGenerator(GeneratorAdapter):
    """Two frames of 64x36 from the seed; keeps nothing between shots."""

    name = "free"

    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        return Conditioning(self.name, shot.prompt, memory_ids=[r.id for r in result.memory])

    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        rng = np.random.default_rng(seed)
        return ShotOutput(rng.integers(0, 256, (2, 36, 64, 3), dtype=np.uint8), shot.fps)


def story(shots: int, variant: int = -1) -> dict[str, Any]:
    """Scenes of 10 shots at one location; two characters per scene, pronouns in continuations."""
    scenes = []
    for s in range(0, shots, 10):
        a, b = CHARACTERS[(s // 10) % 8], CHARACTERS[(s // 10 + 3) % 8]
        items = []
        for i in range(min(10, shots - s)):
            index = s + i
            prompt = [f"{a} walks in.", "She looks around.", f"{a} talks to {b}.", f"{b} answers her."][i % 4]
            if index == variant:
                prompt = f"{a} stops and listens."
            items.append({"index": i + 1, "prompt": prompt, "cut": i % 4 == 0, "duration": 0.5})
        scenes.append({"index": len(scenes) + 1, "location": LOCATIONS[(s // 10) % 4], "shots": items})
    return {"id": "feature", "title": "feature-length", "scenes": scenes}


class PhaseTimer:
    """Seconds per phase per shot, by wrapping the loop's calls."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.shots: list[dict[str, float]] = []

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - started

        setattr(owner, name, timed)

    def end_shot(self, total: float) -> None:
        shot = dict(self.current)
        shot["total"] = total
        shot["overhead"] = total - shot.get("generate", 0.0) - shot.get("mp4", 0.0)
        self.shots.append(shot)
        self.current = defaultdict(float)


def instrument(runner: StoryRunner, timer: PhaseTimer) -> None:
    import continuity.keyframes as keyframes
    import continuity.provenance as provenance
    import continuity.video as video
    from memstore.shots import ShotLog

    timer.wrap(runner.retriever, "retrieve", "retrieve")
    timer.wrap(session_module.StorySession, "_select_memory", "memory")
    timer.wrap(runner.generator, "prepare", "prepare")
    timer.wrap(runner.generator, "generate", "generate")
    timer.wrap(video, "write_mp4", "mp4")
    timer.wrap(keyframes.KeyframeWriter, "write_back", "write_back")
    timer.wrap(provenance, "write_provenance", "provenance")
    timer.wrap(ShotLog, "add", "record")


def median_ms(rows: list[dict[str, float]], key: str) -> float:
    return round(1000 * statistics.median(r.get(key, 0.0) for r in rows), 2) if rows else 0.0


def windows(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    n, w = len(rows), min(100, max(1, len(rows) // 10))
    parts = {"early": rows[:w], "middle": rows[n // 2 - w // 2 : n // 2 + w // 2], "late": rows[-w:]}
    keys = ["overhead", "retrieve", "memory", "prepare", "write_back", "provenance", "record", "generate", "mp4"]
    return {name: {k: median_ms(part, k) for k in keys} for name, part in parts.items()}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(shots: int, folder: Path) -> dict[str, Any]:
    store = Store.init(folder / "db")
    library = store.library("default")
    from continuity.drawn import forest_clearing, harbor_at_dusk

    rng = np.random.default_rng(0)
    for name in CHARACTERS:
        library.register(name, "character", images=[rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)])
    for i, name in enumerate(LOCATIONS):
        art = (harbor_at_dusk if i % 2 else forest_clearing)((96, 54))
        library.register(name, "location", images=[art])
    config = RunConfig(width=64, height=36, fps=4, memory_budget=10)
    timer = PhaseTimer()
    runner = StoryRunner(library, folder / "out", config, generator=FreeGenerator())
    runner.retriever = runner._retriever()
    instrument(runner, timer)
    last = [time.perf_counter()]

    samples: list[tuple[int, float]] = []  # (shots done, RSS): growth that levels off is caches

    def progress(done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        timer.end_shot(now - last[0])
        if done % max(1, total // 10) == 0:
            samples.append((done, round(rss_mb(), 1)))
        last[0] = now

    runner.progress = progress
    rss_before = rss_mb()
    started = time.perf_counter()
    runner.run(parse_story(story(shots)))
    first_run = time.perf_counter() - started
    rss_after = rss_mb()
    rows = timer.shots
    resume = timed_rerun(library, folder, config, story(shots))
    change = timed_rerun(library, folder, config, story(shots, variant=shots // 2))
    return {
        "shots": shots,
        "first_run_s": round(first_run, 1),
        "overhead_median_ms": median_ms(rows, "overhead"),
        "windows_ms": windows(rows),
        "flatness_late_over_early": round(
            windows(rows)["late"]["overhead"] / max(windows(rows)["early"]["overhead"], 1e-9), 3
        ),
        "rss_mb": {
            "before": round(rss_before, 1),
            "after": round(rss_after, 1),
            "growth": round(rss_after - rss_before, 1),
            "by_shot": samples,
        },
        "resume_s": resume["seconds"],
        "resume_generated": resume["generated"],
        "change_at": shots // 2,
        "change_generated": change["generated"],
        "change_first_generated": change["first"],
    }


def timed_rerun(library: Any, folder: Path, config: RunConfig, data: dict[str, Any]) -> dict[str, Any]:
    generated: list[int] = []

    def progress(done: int, total: int, what: str) -> None:
        if what == "generated":
            generated.append(done - 1)

    runner = StoryRunner(library, folder / "out", config, generator=FreeGenerator(), progress=progress)
    started = time.perf_counter()
    runner.run(parse_story(data))
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "generated": len(generated),
        "first": generated[0] if generated else None,
    }


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[1000])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "what": "per-shot loop overhead of StoryRunner (outside generate() and the MP4 encode), flatness, resume",
        "command": "python benchmarks/bench_story_loop.py --shots " + " ".join(str(n) for n in args.shots),
        "commit": commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
        "goals": {"overhead_median_ms": 20, "late_over_early": 1.2, "resume_10k_s": 15},
        "runs": [],
    }
    for shots in args.shots:
        with tempfile.TemporaryDirectory() as folder:
            report = run(shots, Path(folder))
        print(json.dumps(report, indent=2))
        results["runs"].append(report)
    results["machine"]["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
