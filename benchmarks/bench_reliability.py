"""Reliability: concurrent writers, kill -9 crashes and hostile input, counted.

- concurrency: W processes x N mixed operations (register, add images, contested registrations of
  shared names, remove) on one store while a reader process checks every view; then a race of W
  processes registering the same names. Afterwards the raw tables are compared with the workers'
  logs: lost, incomplete, duplicated, torn, orphaned rows; Lance commit conflicts retried.
- crash: T trials of a writer looping registrations/removals/index syncs/repairs on one store,
  killed with SIGKILL at a random moment; after each, the store must open, every entity be whole,
  every reported commit survive, orphans be hidden and repaired, the FAISS index match the table.
  Plus kills during store creation.
- long crash run: ``--crash-trials`` (default 200) kill -9 trials of the same writer, which also
  compacts (``maybe_compact`` and ``optimize``) and syncs the FAISS index, on one store that grows
  across trials: 0 lost, 0 torn, 0 resurrected. ``--crash-trials 40`` (or ``--quick``) is shorter.
- hostile archives: each crafted archive (duplicate ids, twin names, unknown kind, NUL and path
  names, a poisoned expiry, an orphan reference, image bytes not matching their sha256, a vector
  column lying about its dimension, a bad index factory, a zip bomb with a lying header) must be
  refused with the store unchanged; a 2 GiB zip bomb's refusal (by its header) and a 1 GiB member
  under the ratio limit (streamed to disk, then refused) are timed with their peak memory, each in
  a fresh process. (tests/memstore/test_archive.py also covers reference ids of another library
  and an unconfigured vector column, which is dropped rather than added to the store.)
- fuzz: the hypothesis suite tests/memstore/test_hostile_input.py run with a larger example count;
  every case must end in success or a typed ContinuityError with the store unchanged.

Writes benchmarks/results/reliability.json. Run: ``python benchmarks/bench_reliability.py``
(about 15-20 minutes on 2 cores, most of it the 200 crash trials; ``--quick`` for a smaller run
that is not written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memstore.store import Store  # noqa: E402
from tests.memstore.workers.harness import (  # noqa: E402
    check_crashed,
    check_mixed,
    crash_init_trial,
    crash_trial,
    run_workers,
)

RESULT = ROOT / "benchmarks" / "results" / "reliability.json"
BAD_KEYS = (
    "lost",
    "incomplete",
    "resurrected",
    "unexpected",
    "duplicated_names",
    "duplicated_ids",
    "orphans",
    "torn",
    "names_won_twice",
    "reader_violations",
    "index_mismatch",
    "search_foreign",
)
CRASH_BAD = (
    "half_written",
    "lost",
    "resurrected",
    "orphans_left",
    "orphans_visible",
    "orphans_searched",
    "torn",
    "index_mismatch",
)


def concurrency(work: Path, workers: int, ops: int, race_names: int) -> dict:
    mixed = run_workers(work / "mixed", "mixed", workers=workers, ops=ops, seed=1, reader=True)
    report = check_mixed(work / "mixed", mixed)
    race = run_workers(work / "race", "race", workers=workers, ops=race_names, seed=2, reader=False)
    race_report = check_mixed(work / "race", race)
    won = sorted(item["name"] for log in race["logs"] for item in log["won"])
    return {
        "processes": workers + 1,
        "writers": workers,
        "operations": workers * ops,
        "seconds": round(mixed["seconds"], 2),
        "operations_per_second": round(workers * ops / mixed["seconds"], 1),
        "reader_passes": mixed["reader"]["reads"],
        "conflicts_retried": mixed["retries"] + race["retries"],
        "check": report,
        "race": {
            "names": race_names,
            "attempts": workers * race_names,
            "winners_per_name_ok": won == sorted(f"race-{j}" for j in range(race_names)),
            "duplicate_errors": sum(len(log["lost"]) for log in race["logs"]),
            "check": race_report,
        },
        "bad_rows": sum(report[k] for k in BAD_KEYS) + sum(race_report[k] for k in BAD_KEYS),
    }


def crashes(work: Path, trials: int, init_trials: int, max_delay: float = 0.8) -> dict:
    rng = random.Random(42)
    db = work / "crash"
    totals = {k: 0 for k in CRASH_BAD}
    orphans_found = committed = removed = compactions = 0
    failing_trials = []
    started = time.perf_counter()
    for trial in range(trials):
        info = crash_trial(db, trial, rng, max_delay=max_delay)
        report = check_crashed(db, info["committed"], info["removed"])
        for k in CRASH_BAD:
            totals[k] += report[k]
        if any(report[k] for k in CRASH_BAD):
            failing_trials.append({"trial": trial, **report})
        orphans_found += report["orphans_found"]
        committed += len(info["committed"])
        removed += len(info["removed"])
        compactions += info["compactions"]
        if trial % 20 == 19:
            print(f"  crash trial {trial + 1}/{trials}: failures so far {sum(totals.values())}", flush=True)
    entities = len(Store.open(db).library().list())
    init_bad = 0
    init_stores = 0
    for trial in range(init_trials):
        for folder in crash_init_trial(work / f"init{trial}", rng, max_delay=1.2):
            init_stores += 1
            try:
                Store.init(folder)
                Store.open(folder).library().register("x", "prop")
            except Exception:  # noqa: BLE001 - counted, reported as a failure
                init_bad += 1
    return {
        "trials": trials,
        "max_delay_s": max_delay,
        "seconds": round(time.perf_counter() - started, 1),
        "entities_reported_committed": committed,
        "removals_reported": removed,
        "compactions_reported": compactions,
        "failing_trials": failing_trials,
        "entities_at_end": entities,
        "orphan_references_found": orphans_found,
        "failures": totals,
        "init_kill_trials": init_trials,
        "stores_interrupted_or_made": init_stores,
        "stores_not_recovered": init_bad,
        "bad_rows": sum(totals.values()) + init_bad,
    }


def _hostile_cases(exported: Path, work: Path) -> list[tuple[str, Path]]:
    """(name, crafted archive) pairs, each of which the import must refuse."""
    from tests.memstore.workers.archives import bomb, craft, set_values

    def first(column: str, value: object):
        return lambda t: set_values(column, [value, *t.column(column).to_pylist()[1:]])(t)

    def dup_id(t):
        return set_values("id", [t.column("id")[0].as_py()] * t.num_rows)(t)

    def twin(t):
        return set_values("name", ["Twin", "twin", *t.column("name").to_pylist()[2:]])(t)

    def factory(meta):
        meta["config"]["index_factory"] = "HNSW2000000000,Flat"

    def lying_dim(meta):
        meta["vector_columns"]["color_histogram_rgb8"]["dim"] = "8"

    no_tokens = {"tokens": lambda t: t.slice(0, 0)}
    return [
        ("duplicate entity ids", craft(exported, work / "a1.zip", entities=dup_id)),
        ("Twin and twin", craft(exported, work / "a2.zip", entities=twin)),
        ("kind villain", craft(exported, work / "a3.zip", entities=first("kind", "villain"))),
        ("NUL in a name", craft(exported, work / "a4.zip", entities=first("name", "A\x00B"))),
        ("../ in a name", craft(exported, work / "a5.zip", entities=first("name", "../etc"))),
        ("poisoned rights expiry", craft(exported, work / "a6.zip", entities=first("rights_expires", 3 * 10**17))),
        ("orphan reference", craft(exported, work / "a7.zip", references=first("entity_id", "f" * 32), **no_tokens)),
        ("image bytes vs sha256", craft(exported, work / "a8.zip", references=first("sha256", "0" * 64), **no_tokens)),
        ("vector column lies about its dim", craft(exported, work / "a9.zip", manifest=lying_dim)),
        ("index_factory HNSW2000000000,Flat", craft(exported, work / "a10.zip", manifest=factory)),
        ("zip bomb, lying header", bomb(work / "a11.zip", 256 << 20, declared=1000)),
    ]


def _peak_import(archive: Path, db: Path) -> dict:
    """Import ``archive`` in a fresh process: its outcome, the time it took and its peak RSS,
    beside the peak RSS of the same process that opened the store and imported nothing."""
    code = (
        "import resource, sys, time\n"
        "from memstore.archive import import_library\n"
        "from memstore.store import Store\n"
        "store = Store.init(sys.argv[1]); base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "started = time.perf_counter()\n"
        "try:\n    import_library(store, sys.argv[2]); outcome = 'imported'\n"
        "except Exception as exc:\n    outcome = type(exc).__name__ + ': ' + str(exc)\n"
        "seconds = time.perf_counter() - started\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(repr((outcome, seconds, base, peak)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(db), str(archive)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    outcome, seconds, base, peak = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr
    return {
        "outcome": outcome[:300],
        "seconds": round(seconds, 4),
        "rss_before_mb": round(base / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "added_peak_mb": round((peak - base) / 1024, 1),
    }


def hostile_archives(work: Path, bomb_bytes: int) -> dict:
    """Every crafted archive refused, the store unchanged; the zip bomb timed and measured."""
    from memstore.archive import import_library
    from memstore.errors import ContinuityError
    from tests.memstore.test_library import snapshot
    from tests.memstore.workers.archives import bomb
    from tests.memstore.workers.common import tiny_png

    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    source = Store.init(work / "source").library("studio")
    for name in ("Aria", "Bram", "Keep"):
        source.register(name, "character", images=[tiny_png(rng), tiny_png(rng)])
    exported = work / "studio.continuity"
    source.export(exported)
    target = Store.init(work / "target")
    target.library("elsewhere").register("Other", "prop", images=[tiny_png(rng)])
    cases = []
    for name, archive in _hostile_cases(exported, work):
        before, schema = snapshot(target), target.references.schema
        started = time.perf_counter()
        try:
            import_library(target, archive)
            error = None
        except ContinuityError as exc:
            error = f"{type(exc).__name__}: {exc}"
        cases.append(
            {
                "case": name,
                "refused": error is not None,
                "store_unchanged": snapshot(target) == before and target.references.schema == schema,
                "seconds": round(time.perf_counter() - started, 4),
                "error": (error or "")[:300],
            }
        )
    started = time.perf_counter()
    zip_bomb = bomb(work / "bomb.zip", bomb_bytes, level=1)
    made = time.perf_counter() - started
    measured = _peak_import(zip_bomb, work / "bomb-target")
    bomb_case = {
        "case": f"zip bomb: {zip_bomb.stat().st_size / 1e6:.1f} MB inflating to {bomb_bytes / 2**30:.1f} GiB",
        "archive_bytes": zip_bomb.stat().st_size,
        "inflated_bytes": bomb_bytes,
        "seconds_to_make": round(made, 1),
        "refused": measured["outcome"].startswith("ArchiveError"),
        **measured,
    }
    # under the ratio limit, so it passes the header checks: streamed to disk in chunks, then refused
    streamed = bomb(work / "streamed.zip", bomb_bytes // 2, level=1, noise=8192)
    streamed_case = {
        "case": f"{streamed.stat().st_size / 1e6:.1f} MB inflating to {bomb_bytes / 2**31:.1f} GiB (ratio under"
        " the limit: streamed, never held in memory)",
        "archive_bytes": streamed.stat().st_size,
        **_peak_import(streamed, work / "streamed-target"),
    }
    streamed_case["refused"] = streamed_case["outcome"].startswith("ArchiveError")
    ok = all(c["refused"] and c["store_unchanged"] for c in cases) and bomb_case["refused"] and streamed_case["refused"]
    return {"cases": cases, "zip_bomb": bomb_case, "streamed_member": streamed_case, "all_refused_store_unchanged": ok}


def fuzz(examples: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        counts = fh.name
    env = dict(os.environ, CONTINUITY_FUZZ_EXAMPLES=str(examples), CONTINUITY_FUZZ_COUNT_FILE=counts)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/memstore/test_hostile_input.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    cases = sum(int(x) for x in Path(counts).read_text().split() if x.strip())
    os.unlink(counts)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {
        "examples_per_property": examples,
        "cases": cases,
        "passed": proc.returncode == 0,
        "pytest": summary,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run; results are printed, not written")
    parser.add_argument(
        "--crash-trials", type=int, default=None, help="kill -9 trials of the long crash run (default 200; quick: 4)"
    )
    args = parser.parse_args()
    quick = args.quick
    trials = args.crash_trials if args.crash_trials is not None else (4 if quick else 200)
    work = Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    try:
        conc = concurrency(work, workers=4, ops=40 if quick else 200, race_names=5 if quick else 20)
        print(
            f"concurrency: {conc['operations']} operations by {conc['writers']} writers + 1 reader in "
            f"{conc['seconds']} s, bad rows {conc['bad_rows']}, conflicts retried {conc['conflicts_retried']}",
            flush=True,
        )
        archives = hostile_archives(work / "archives", bomb_bytes=(256 << 20) if quick else 2 << 30)
        print(
            f"hostile archives: {sum(c['refused'] for c in archives['cases'])}/{len(archives['cases'])} refused,"
            f" {archives['zip_bomb']['case']} refused in {archives['zip_bomb']['seconds']} s with"
            f" {archives['zip_bomb']['added_peak_mb']} MB added peak memory",
            flush=True,
        )
        crash = crashes(work, trials=trials, init_trials=1 if quick else 3, max_delay=1.2)
        print(
            f"crash: {crash['trials']} kill -9 trials ({crash['compactions_reported']} compactions reported),"
            f" failures {crash['failures']}, init stores not recovered {crash['stores_not_recovered']}",
            flush=True,
        )
        fz = fuzz(20 if quick else 200)
        print(f"fuzz: {fz['cases']} cases, {fz['pytest']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "reliability",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "summary": {
            "operations": conc["operations"] + conc["race"]["attempts"],
            "processes": conc["processes"],
            "crash_trials": crash["trials"] + crash["init_kill_trials"],
            "crash_lost": crash["failures"]["lost"],
            "crash_torn": crash["failures"]["torn"] + crash["failures"]["half_written"],
            "crash_resurrected": crash["failures"]["resurrected"],
            "fuzz_cases": fz["cases"],
            "rows_lost": conc["bad_rows"] + crash["bad_rows"],
            "conflicts_retried": conc["conflicts_retried"],
            "fuzz_passed": fz["passed"],
            "hostile_archives_refused": archives["all_refused_store_unchanged"],
            "zip_bomb_seconds": archives["zip_bomb"]["seconds"],
            "zip_bomb_added_peak_mb": archives["zip_bomb"]["added_peak_mb"],
        },
        "concurrency": conc,
        "crash": crash,
        "hostile_archives": archives,
        "fuzz": fz,
    }
    print(json.dumps(result["summary"], indent=2))
    if not quick:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULT.relative_to(ROOT)}")
    if result["summary"]["rows_lost"] or not fz["passed"] or not archives["all_refused_store_unchanged"]:
        sys.exit(1)


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
