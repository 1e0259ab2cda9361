"""Retrieval quality on annotated ST-Bench stories: per-shot entity precision, recall and F1.

Entities are registered from names, aliases and descriptions only (a library with no image
embedders: the signals are names, BM25 and story context). Each story is replayed shot by shot,
once with a :class:`StoryContext` (continuation shots, pronouns, definite descriptions) and once
without, and the retrieved entity names are compared with the annotation of benchmarks/data/
(this project's annotations; the story text is read from ../shared/data/st-bench).
Metrics are macro-averaged over shots (an empty prediction and truth count as a perfect shot).

Run: ``.venv/bin/python -m benchmarks.bench_retrieval_quality [--stories cat dog]``
Writes benchmarks/results/retrieval_quality.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "st-bench"
ANNOTATIONS = Path(__file__).resolve().parent / "data" / "st_bench_annotations.json"
OUT = Path(__file__).resolve().parent / "results" / "retrieval_quality.json"


def prf(predicted: set[str], truth: set[str]) -> tuple[float, float, float]:
    if not predicted and not truth:
        return 1.0, 1.0, 1.0
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 0.0
    r = tp / len(truth) if truth else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def evaluate_story(name: str, annotation: dict[str, Any], shared: Path = SHARED) -> dict[str, Any]:
    from continuity.story import load_story
    from memstore.store import Store
    from retrieval import Retriever, ShotQuery, StoryContext

    script = load_story(shared / f"{name}.json")
    shots = list(script.iter_shots())
    if len(shots) != len(annotation["shots"]):
        raise ValueError(f"{name}: {len(shots)} shots in the story, {len(annotation['shots'])} annotated")
    root = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    try:
        library = Store.init(root / "db").library("bench")
        library.configure(embedders=[])  # names and descriptions only: no images, no embedder
        for e in annotation["entities"]:
            library.register(e["name"], e["kind"], aliases=e.get("aliases", []), description=e.get("description", ""))
        retriever = Retriever(library)
        out: dict[str, Any] = {"shots": len(shots)}
        for mode in ("with_context", "without_context"):
            context: StoryContext | None = StoryContext() if mode == "with_context" else None
            rows = []
            for (index, _scene, shot), truth in zip(shots, annotation["shots"], strict=False):
                query = ShotQuery(prompt=shot.prompt, story_id=script.id, shot_index=index, cut=shot.cut)
                result = retriever.retrieve(query, context)
                if context is not None:
                    context.update(result)
                predicted = set(result.names())
                p, r, f = prf(predicted, set(truth))
                rows.append(
                    {
                        "shot": index,
                        "predicted": sorted(predicted),
                        "truth": sorted(truth),
                        "precision": round(p, 4),
                        "recall": round(r, 4),
                        "f1": round(f, 4),
                    }
                )
            out[mode] = {
                **{m: round(sum(row[m] for row in rows) / len(rows), 4) for m in ("precision", "recall", "f1")},
                "per_shot": rows,
            }
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"ST-Bench is not at {SHARED}; this benchmark needs ../shared/data/st-bench")
    annotations = json.loads(ANNOTATIONS.read_text())["stories"]
    names = args.stories or sorted(annotations)
    started = time.perf_counter()
    stories = {n: evaluate_story(n, annotations[n]) for n in names}
    summary = {}
    for mode in ("with_context", "without_context"):
        total = sum(s["shots"] for s in stories.values())
        summary[mode] = {
            m: round(sum(s[mode][m] * s["shots"] for s in stories.values()) / total, 4)
            for m in ("precision", "recall", "f1")
        }
    report = {
        "benchmark": "retrieval_quality",
        "data": "ST-Bench stories (StoryMem), entities and per-shot lists annotated by this project",
        "setup": "entities registered by name/aliases/description only; signals: names, aliases, BM25, story context",
        "stories": names,
        "shots": sum(s["shots"] for s in stories.values()),
        "summary": summary,
        "per_story": {
            n: {
                mode: {m: s[mode][m] for m in ("precision", "recall", "f1")}
                for mode in ("with_context", "without_context")
            }
            for n, s in stories.items()
        },
        "details": stories,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({"summary": summary, "per_story": report["per_story"]}, indent=1))
    return report


if __name__ == "__main__":
    main()
