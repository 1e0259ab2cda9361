"""Memory coverage: how often does the selected memory hold every entity a shot needs?

For each shot of a story, memory is chosen from keyframes of the shots before it, under a budget;
a shot is covered when every entity it needs (its characters and its location) appears in at
least one selected keyframe. Policies compared: ``sink_recent`` (StoryMem's first-3 + recent
window, arXiv 2512.19539) and ``relevant`` (this project's entity-covering policy, given the
shot's entities as the retriever's prediction).

Stories:
- the annotated ST-Bench stories of the retrieval benchmark (``benchmarks/data/st_bench/*.json``,
  our annotations; the story text stays in ../shared and is not needed here), each shot's
  annotated entities written back as one keyframe per shot;
- a synthetic long story: 240 shots, 8 recurring characters each absent for long stretches,
  4 locations; seeded, described in ``synthetic_story``.

Writes benchmarks/results/memory_coverage.json. Run: ``python benchmarks/bench_memory_coverage.py``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memstore.schema import Reference  # noqa: E402
from retrieval.memory import group_frames, select_memory  # noqa: E402

BUDGETS = (4, 8, 10)
POLICIES = ("sink_recent", "relevant")
ANNOTATIONS = ROOT / "benchmarks" / "data" / "st_bench"


def synthetic_story(shots: int = 240, characters: int = 8, locations: int = 4, seed: int = 0) -> list[list[str]]:
    """Per-shot entity lists. Characters come and go in episodes: each is on screen for a run of
    3-12 shots, then away for 20-60 shots; 1-3 characters per shot; a location holds for a
    scene of 4-10 shots."""
    rng = np.random.default_rng(seed)
    present = np.zeros((shots, characters), dtype=bool)
    for c in range(characters):
        t = int(rng.integers(0, 30))
        while t < shots:
            on = int(rng.integers(3, 13))
            present[t:t + on, c] = True
            t += on + int(rng.integers(20, 61))
    plan, t = [], 0
    location = 0
    scene_left = 0
    for i in range(shots):
        if scene_left == 0:
            location = int(rng.integers(0, locations))
            scene_left = int(rng.integers(4, 11))
        scene_left -= 1
        cast = [f"char{c}" for c in np.flatnonzero(present[i])][:3]
        if not cast:
            cast = [f"char{int(rng.integers(0, characters))}"]
        plan.append(cast + [f"loc{location}"])
    return plan


def load_annotated() -> dict[str, list[list[str]]]:
    stories = {}
    for path in sorted(ANNOTATIONS.glob("*.json")) if ANNOTATIONS.is_dir() else []:
        data = json.loads(path.read_text())
        shots = data.get("shots") or []
        plan = []
        for shot in shots:
            names = shot.get("entities") if isinstance(shot, dict) else shot
            plan.append([str(n) for n in names or []])
        if plan:
            stories[data.get("story", path.stem)] = plan
    return stories


def replay(plan: list[list[str]], policy: str, budget: int) -> dict[str, float]:
    """Each shot writes one keyframe showing its entities; memory for shot i sees shots < i."""
    refs: list[Reference] = []
    covered = coverable = 0
    entity_hits = entity_total = 0
    seen: set[str] = set()
    for i, needed in enumerate(plan):
        frames = group_frames(refs)
        locations = [e for e in needed if e.startswith("loc") or e.lower().startswith("location:")]
        chosen = select_memory(policy, frames, entity_ids=needed, location_id=locations[0] if locations else None,
                               budget=budget)
        in_memory = set().union(*[f.entity_ids for f, _ in chosen]) if chosen else set()
        needed_set = set(needed)
        if needed_set <= seen:
            coverable += 1
            covered += needed_set <= in_memory
        entity_total += len(needed_set & seen)
        entity_hits += len(needed_set & seen & in_memory)
        for e in needed:
            refs.append(Reference(entity_id=e, kind="character", source="harvested", width=1, height=1,
                                  sha256=f"{i}", story="s", shot=i, frame=0))
        seen |= needed_set
    return {
        "shots": len(plan),
        "coverable_shots": coverable,
        "fully_covered_share": round(covered / coverable, 4) if coverable else None,
        "entity_recall": round(entity_hits / entity_total, 4) if entity_total else None,
    }


def main() -> dict:
    started = time.perf_counter()
    stories = {f"st-bench/{k}": v for k, v in load_annotated().items()}
    stories["synthetic-240"] = synthetic_story()
    results: dict = {"budgets": list(BUDGETS), "policies": list(POLICIES), "stories": {}, "mean": {}}
    for name, plan in stories.items():
        results["stories"][name] = {
            policy: {str(b): replay(plan, policy, b) for b in BUDGETS} for policy in POLICIES
        }
    for group, names in (("st-bench", [n for n in stories if n.startswith("st-bench/")]), ("synthetic", ["synthetic-240"])):
        if not names:
            continue
        results["mean"][group] = {
            policy: {
                str(b): round(float(np.mean([results["stories"][n][policy][str(b)]["fully_covered_share"] or 0.0 for n in names])), 4)
                for b in BUDGETS
            }
            for policy in POLICIES
        }
    results["notes"] = (
        "fully_covered_share: share of shots (whose entities all appeared before) with every needed entity in memory. "
        "relevant is given the shot's annotated entities as the retriever's prediction (oracle); "
        "ST-Bench plans are our annotations in benchmarks/data/st_bench/."
    )
    results["seconds"] = round(time.perf_counter() - started, 2)
    out = ROOT / "benchmarks" / "results" / "memory_coverage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{'story group':<14} {'policy':<12} " + " ".join(f"budget {b:>2}" for b in BUDGETS))
    for group, by_policy in results["mean"].items():
        for policy, by_budget in by_policy.items():
            print(f"{group:<14} {policy:<12} " + " ".join(f"{by_budget[str(b)]:>9.3f}" for b in BUDGETS))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
