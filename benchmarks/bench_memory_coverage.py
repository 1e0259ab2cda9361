"""Memory coverage: how often does the selected memory hold every entity a shot needs?

For each shot of a story, memory is chosen from keyframes of the shots before it, under a budget;
a shot is covered when every entity it needs (its characters and its location) appears in at
least one selected keyframe. Policies compared: ``sink_recent`` (StoryMem's first-3 + recent
window, arXiv 2512.19539) and ``relevant`` (this project's entity-covering policy, given the
shot's entities as the retriever's prediction).

Stories:
- the annotated ST-Bench stories of the retrieval benchmark (``benchmarks/data/st_bench_annotations.json``,
  our annotations), each shot's annotated entities written back as one keyframe per shot. The
  ``relevant`` policy runs twice there: given the annotated entities (oracle) and given what the
  real Retriever predicts from the shot prompt with story context (the prompts are read from
  ../shared; that variant is skipped when it is absent);
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
ANNOTATIONS = ROOT / "benchmarks" / "data" / "st_bench_annotations.json"
SHARED = ROOT.parent / "shared" / "data" / "st-bench"


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
            present[t : t + on, c] = True
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


def load_annotated() -> dict[str, dict]:
    """story name -> {"shots": per-shot entity names, "locations": location names, "entities": [...]}."""
    if not ANNOTATIONS.exists():
        return {}
    data = json.loads(ANNOTATIONS.read_text())
    out = {}
    for name, story in data["stories"].items():
        locations = {e["name"] for e in story["entities"] if e["kind"] == "location"}
        out[name] = {"shots": [list(s) for s in story["shots"]], "locations": locations, "entities": story["entities"]}
    return out


def retriever_predictions(name: str, story: dict) -> list[list[str]] | None:
    """What the Retriever predicts per shot from the prompts (with story context), or None
    without ../shared."""
    import shutil
    import tempfile

    if not (SHARED / f"{name}.json").exists():
        return None
    from continuity.story import load_story
    from memstore.store import Store
    from retrieval import Retriever, ShotQuery, StoryContext

    script = load_story(SHARED / f"{name}.json")
    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        library = Store.init(root / "db").library("bench")
        library.configure(embedders=[])
        for e in story["entities"]:
            library.register(e["name"], e["kind"], aliases=e.get("aliases", []), description=e.get("description", ""))
        retriever, context, out = Retriever(library), StoryContext(), []
        for index, scene, shot in script.iter_shots():
            query = ShotQuery(
                prompt=shot.prompt,
                story_id=script.id,
                shot_index=index,
                cut=shot.cut,
                scene=scene.index,
                first_frame_prompt=shot.first_frame_prompt,
            )
            result = retriever.retrieve(query, context)
            context.update(result)
            out.append(result.names())
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def replay(
    plan: list[list[str]],
    policy: str,
    budget: int,
    *,
    locations: set[str] | None = None,
    predicted: list[list[str]] | None = None,
) -> dict[str, float]:
    """Each shot writes one keyframe showing its (true) entities; memory for shot i sees shots < i
    and is chosen given ``predicted[i]`` (default: the true entities, an oracle)."""
    is_location = (lambda e: e in locations) if locations is not None else (lambda e: e.startswith("loc"))
    refs: list[Reference] = []
    covered = coverable = 0
    entity_hits = entity_total = 0
    seen: set[str] = set()
    for i, needed in enumerate(plan):
        frames = group_frames(refs)
        guess = predicted[i] if predicted is not None else needed
        place = [e for e in guess if is_location(e)]
        chosen = select_memory(policy, frames, entity_ids=guess, location_id=place[0] if place else None, budget=budget)
        in_memory = set().union(*[f.entity_ids for f, _ in chosen]) if chosen else set()
        needed_set = set(needed)
        if needed_set <= seen:
            coverable += 1
            covered += needed_set <= in_memory
        entity_total += len(needed_set & seen)
        entity_hits += len(needed_set & seen & in_memory)
        for e in needed:
            refs.append(
                Reference(
                    entity_id=e,
                    kind="character",
                    source="harvested",
                    width=1,
                    height=1,
                    sha256=f"{i}",
                    story="s",
                    shot=i,
                    frame=0,
                )
            )
        seen |= needed_set
    return {
        "shots": len(plan),
        "coverable_shots": coverable,
        "fully_covered_share": round(covered / coverable, 4) if coverable else None,
        "entity_recall": round(entity_hits / entity_total, 4) if entity_total else None,
    }


def main() -> dict:
    started = time.perf_counter()
    results: dict = {"budgets": list(BUDGETS), "stories": {}, "mean": {}}
    for name, story in load_annotated().items():
        plan, locations = story["shots"], story["locations"]
        row = {p: {str(b): replay(plan, p, b, locations=locations) for b in BUDGETS} for p in POLICIES}
        predicted = retriever_predictions(name, story)
        if predicted is not None:
            row["relevant_retriever"] = {
                str(b): replay(plan, "relevant", b, locations=locations, predicted=predicted) for b in BUDGETS
            }
        results["stories"][f"st-bench/{name}"] = row
    synthetic = synthetic_story()
    row = {p: {str(b): replay(synthetic, p, b) for b in BUDGETS} for p in POLICIES}
    # an imperfect retriever: each needed entity missed with probability 0.2 (seeded)
    rng = np.random.default_rng(1)
    noisy = [[e for e in shot if rng.random() >= 0.2] for shot in synthetic]
    row["relevant_noisy_20pct_miss"] = {str(b): replay(synthetic, "relevant", b, predicted=noisy) for b in BUDGETS}
    results["stories"]["synthetic-240"] = row
    groups = {"st-bench": [n for n in results["stories"] if n.startswith("st-bench/")], "synthetic": ["synthetic-240"]}
    for group, names in groups.items():
        if not names:
            continue
        policies = sorted({p for n in names for p in results["stories"][n]}, key=lambda p: (p != "sink_recent", p))
        results["mean"][group] = {
            p: {
                str(b): round(
                    float(
                        np.mean(
                            [
                                results["stories"][n][p][str(b)]["fully_covered_share"] or 0.0
                                for n in names
                                if p in results["stories"][n]
                            ]
                        )
                    ),
                    4,
                )
                for b in BUDGETS
            }
            for p in policies
        }
    results["notes"] = (
        "fully_covered_share: share of shots (whose entities all appeared before) with every needed entity in memory. "
        "relevant: given the shot's annotated entities (oracle); relevant_retriever: given the Retriever's predictions "
        "from the prompt with story context. ST-Bench plans are our annotations (benchmarks/data/st_bench_annotations.json); "
        "synthetic-240 is made by synthetic_story() with seed 0; relevant_noisy_20pct_miss gives the policy predictions "
        "that miss each needed entity with probability 0.2."
    )
    results["seconds"] = round(time.perf_counter() - started, 2)
    out = ROOT / "benchmarks" / "results" / "memory_coverage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{'story group':<12} {'policy':<20} " + " ".join(f"budget {b:>2}" for b in BUDGETS))
    for group, by_policy in results["mean"].items():
        for policy, by_budget in by_policy.items():
            print(f"{group:<12} {policy:<20} " + " ".join(f"{by_budget[str(b)]:>9.3f}" for b in BUDGETS))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
