"""Reliability: concurrent writers, kill -9 crashes and hostile input, counted.

- concurrency: W processes x N mixed operations (register, add images, contested registrations of
  shared names, remove) on one store while a reader process checks every view; then a race of W
  processes registering the same names. Afterwards the raw tables are compared with the workers'
  logs: lost, incomplete, duplicated, torn, orphaned rows; Lance commit conflicts retried.
- crash: T trials of a writer looping registrations/removals/index syncs/repairs on one store,
  killed with SIGKILL at a random moment; after each, the store must open, every entity be whole,
  every reported commit survive, orphans be hidden and repaired, the FAISS index match the table.
  Plus kills during store creation.
- fuzz: the hypothesis suite tests/memstore/test_hostile_input.py run with a larger example count;
  every case must end in success or a typed ContinuityError with the store unchanged.

Writes benchmarks/results/reliability.json. Run: ``python benchmarks/bench_reliability.py``
(about 4-5 minutes on 2 cores; ``--quick`` for a smaller run that is not written).
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


def crashes(work: Path, trials: int, init_trials: int) -> dict:
    rng = random.Random(42)
    db = work / "crash"
    totals = {k: 0 for k in CRASH_BAD}
    orphans_found = committed = 0
    started = time.perf_counter()
    for trial in range(trials):
        info = crash_trial(db, trial, rng)
        report = check_crashed(db, info["committed"], info["removed"])
        for k in CRASH_BAD:
            totals[k] += report[k]
        orphans_found += report["orphans_found"]
        committed += len(info["committed"])
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
        "seconds": round(time.perf_counter() - started, 1),
        "entities_reported_committed": committed,
        "entities_at_end": entities,
        "orphan_references_found": orphans_found,
        "failures": totals,
        "init_kill_trials": init_trials,
        "stores_interrupted_or_made": init_stores,
        "stores_not_recovered": init_bad,
        "bad_rows": sum(totals.values()) + init_bad,
    }


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
    args = parser.parse_args()
    quick = args.quick
    work = Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    try:
        conc = concurrency(work, workers=4, ops=40 if quick else 200, race_names=5 if quick else 20)
        print(
            f"concurrency: {conc['operations']} operations by {conc['writers']} writers + 1 reader in "
            f"{conc['seconds']} s, bad rows {conc['bad_rows']}, conflicts retried {conc['conflicts_retried']}",
            flush=True,
        )
        crash = crashes(work, trials=4 if quick else 40, init_trials=1 if quick else 3)
        print(
            f"crash: {crash['trials']} kill -9 trials, failures {crash['failures']}, "
            f"init stores not recovered {crash['stores_not_recovered']}",
            flush=True,
        )
        fz = fuzz(20 if quick else 200)
        print(f"fuzz: {fz['cases']} cases, {fz['pytest']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "reliability",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "summary": {
            "operations": conc["operations"] + conc["race"]["attempts"],
            "processes": conc["processes"],
            "crash_trials": crash["trials"] + crash["init_kill_trials"],
            "fuzz_cases": fz["cases"],
            "rows_lost": conc["bad_rows"] + crash["bad_rows"],
            "conflicts_retried": conc["conflicts_retried"],
            "fuzz_passed": fz["passed"],
        },
        "concurrency": conc,
        "crash": crash,
        "fuzz": fz,
    }
    print(json.dumps(result["summary"], indent=2))
    if not quick:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULT.relative_to(ROOT)}")
    if result["summary"]["rows_lost"] or not fz["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
