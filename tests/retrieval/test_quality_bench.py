"""The quality benchmark runs on annotated ST-Bench stories, and story context keeps or improves recall."""

from __future__ import annotations

import json

from benchmarks.bench_retrieval_quality import ANNOTATIONS, evaluate_story, prf


def test_prf_counts():
    assert prf({"a", "b"}, {"a", "c"}) == (0.5, 0.5, 0.5)
    assert prf(set(), set()) == (1.0, 1.0, 1.0)
    assert prf(set(), {"a"})[1] == 0.0


def test_context_keeps_or_improves_recall_on_st_bench(shared_dir):
    annotations = json.loads(ANNOTATIONS.read_text())["stories"]
    for name in ("cat", "titanic"):
        result = evaluate_story(name, annotations[name], shared_dir / "data" / "st-bench")
        assert result["with_context"]["recall"] >= result["without_context"]["recall"]
        # these two stories score 0.93+ with context (benchmarks/results/retrieval_quality.json); a
        # regression of a few points shows here, not only in the benchmark
        assert result["with_context"]["f1"] >= 0.85, (name, result["with_context"])
