"""Retrieval quality on annotated ST-Bench stories: micro precision, recall and F1 per entity kind.

Entities are registered from names, aliases and descriptions only (a library with no image
embedders: the signals are names, BM25 and story context), as a user registering a library would
write them (benchmarks/data/st_bench_annotations.json; descriptions from the story overview, never
from the scored prompts). Each story is replayed shot by shot through :class:`Retriever`, once with
a :class:`StoryContext` and once without, and compared with the per-shot annotation; a plain
case-insensitive name/alias match is the baseline. Counts (true positives, false positives, false
negatives) are summed over all shots of a split, per kind (characters, locations, props) and for
all kinds: micro-averaged. The annotation's ``held_out`` split is never tuned on; it is reported
beside the ``tune`` split.

Each query carries what a story runner knows of the shot: its scene number and, where the script
has one, its first-frame prompt (ST-Bench's ``first_frame_prompt``).

Run: ``.venv/bin/python -m benchmarks.bench_retrieval_quality [--stories cat dog] [--split tune]``
Writes benchmarks/results/retrieval_quality.json (with the command and the git commit).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "st-bench"
ANNOTATIONS = Path(__file__).resolve().parent / "data" / "st_bench_annotations.json"
OUT = Path(__file__).resolve().parent / "results" / "retrieval_quality.json"
KINDS = ("character", "location", "prop")
MODES = ("with_context", "without_context", "names_only")


def prf(predicted: set[str], truth: set[str]) -> tuple[float, float, float]:
    if not predicted and not truth:
        return 1.0, 1.0, 1.0
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 0.0
    r = tp / len(truth) if truth else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def micro(counts: dict[str, int]) -> dict[str, float]:
    """Precision, recall and F1 from summed counts (a split with nothing to find scores 1.0)."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), **counts}


def shot_counts(predicted: set[str], truth: set[str], kind_of: dict[str, str]) -> dict[str, dict[str, int]]:
    """tp/fp/fn of one shot per kind and for 'all'."""
    out = {k: {"tp": 0, "fp": 0, "fn": 0} for k in (*KINDS, "all")}
    for name in predicted | truth:
        what = "tp" if name in predicted and name in truth else ("fp" if name in predicted else "fn")
        for k in (kind_of.get(name, "other"), "all"):
            if k in out:
                out[k][what] += 1
    return out


def add_counts(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for k, c in more.items():
        for what, n in c.items():
            total.setdefault(k, {"tp": 0, "fp": 0, "fn": 0})[what] += n


def names_only(prompt: str, entities: Iterable[dict[str, Any]]) -> set[str]:
    """The baseline: every entity whose name or an alias is in the prompt, case-insensitive, on word boundaries."""
    found = set()
    for e in entities:
        for name in [e["name"], *e.get("aliases", [])]:
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", prompt, re.IGNORECASE):
                found.add(e["name"])
    return found


def script_query(script: Any, index: int, scene: Any, shot: Any) -> Any:
    """The retriever's query for one shot of a loaded story script, as a story run asks it."""
    from retrieval import ShotQuery

    return ShotQuery(
        prompt=shot.prompt,
        story_id=script.id,
        shot_index=index,
        cut=shot.cut,
        scene=scene.index,
        first_frame_prompt=shot.first_frame_prompt,
    )


def evaluate_story(name: str, annotation: dict[str, Any], shared: Path = SHARED) -> dict[str, Any]:
    from continuity.story import load_story
    from memstore.store import Store
    from retrieval import Retriever, StoryContext

    script = load_story(shared / f"{name}.json")
    shots = list(script.iter_shots())
    if len(shots) != len(annotation["shots"]):
        raise ValueError(f"{name}: {len(shots)} shots in the story, {len(annotation['shots'])} annotated")
    kind_of = {e["name"]: e["kind"] for e in annotation["entities"]}
    root = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    try:
        library = Store.init(root / "db").library("bench")
        library.configure(embedders=[])  # names and descriptions only: no images, no embedder
        for e in annotation["entities"]:
            library.register(e["name"], e["kind"], aliases=e.get("aliases", []), description=e.get("description", ""))
        retriever = Retriever(library)
        out: dict[str, Any] = {"shots": len(shots)}
        for mode in MODES:
            context: StoryContext | None = StoryContext() if mode == "with_context" else None
            rows, totals = [], {}
            for (index, scene, shot), truth in zip(shots, annotation["shots"], strict=True):
                reasons: dict[str, list[str]] = {}
                if mode == "names_only":
                    predicted = names_only(shot.prompt, annotation["entities"])
                else:
                    result = retriever.retrieve(script_query(script, index, scene, shot), context)
                    if context is not None:
                        context.update(result)
                    predicted = set(result.names())
                    reasons = {h.name: list(h.reasons) for h in result.hits}
                    if result.notes:
                        reasons["notes"] = list(result.notes)
                counts = shot_counts(predicted, set(truth), kind_of)
                add_counts(totals, counts)
                row = {"shot": index, "predicted": sorted(predicted), "truth": sorted(truth)}
                if reasons:
                    row["reasons"] = reasons
                rows.append(row)
            # precision/recall/f1 at the top: micro over the story's shots, all kinds
            out[mode] = {**{m: v for m, v in micro(totals["all"]).items() if m in ("precision", "recall", "f1")}}
            out[mode] |= {"counts": totals, "per_shot": rows}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def summarize(stories: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Micro P/R/F1 per mode and kind over the given stories."""
    out: dict[str, Any] = {"stories": list(names), "shots": sum(stories[n]["shots"] for n in names)}
    for mode in MODES:
        totals: dict[str, dict[str, int]] = {}
        for n in names:
            add_counts(totals, stories[n][mode]["counts"])
        out[mode] = {k: micro(totals.get(k, {"tp": 0, "fp": 0, "fn": 0})) for k in ("all", *KINDS)}
    return out


def git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", nargs="*", default=None)
    parser.add_argument("--split", choices=("tune", "held_out", "all"), default="all")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"ST-Bench is not at {SHARED}; this benchmark needs ../shared/data/st-bench")
    data = json.loads(ANNOTATIONS.read_text())
    annotations, splits = data["stories"], data["splits"]
    if args.stories:
        names = list(args.stories)
    elif args.split == "all":
        names = sorted(annotations)
    else:
        names = list(splits[args.split])
    started = time.perf_counter()
    stories = {n: evaluate_story(n, annotations[n]) for n in names}
    summary = {
        split: summarize(stories, [n for n in members if n in stories])
        for split, members in (*splits.items(), ("all", sorted(stories)))
        if any(n in stories for n in members)
    }
    report = {
        "benchmark": "retrieval_quality",
        "command": " ".join([".venv/bin/python -m benchmarks.bench_retrieval_quality", *(argv or sys.argv[1:])]),
        "git_commit": git_commit(),
        "data": "ST-Bench stories (StoryMem); entities and per-shot on-screen lists annotated by this project",
        "setup": (
            "entities registered by name/aliases/description only (no images, no embedder); signals: explicit cast, "
            "names, BM25, story context, place reading; queries carry scene number and first-frame prompt"
        ),
        "metric": "micro precision/recall/F1 over all shots of a split, per kind and for all kinds",
        "splits": splits,
        "summary": summary,
        "per_story": {n: summarize(stories, [n]) for n in stories},
        "details": stories,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    brief = {s: {m: {k: v["f1"] for k, v in row[m].items()} for m in MODES} for s, row in summary.items()}
    print(json.dumps(brief, indent=1))
    return report


if __name__ == "__main__":
    main()
