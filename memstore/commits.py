"""Writers on many machines: the store's write lease, and a check that the object store makes
Lance commits atomic.

What Lance guarantees (pylance >= 0.25): every commit writes manifest ``N+1`` with a conditional PUT
(``If-None-Match: *``) on S3, GCS and Azure, or through DynamoDB for ``s3+ddb://`` URIs; a writer
that loses the race re-reads, checks the winner's transaction for conflicts and retries. So
concurrent appends are never lost, and two updates of the same row conflict (one is retried on the
new version). What it does not give: a unique key. Two ``merge_insert`` calls that both insert the
same new key both succeed (lance-format/lance#4585, #8949), and the store's "a name is free, then
write it" needs a lock across processes anyway.

The local store serialises writers with ``flock``; machines share no lock file, so a remote store
keeps a one-row Lance table (:data:`LEASE_TABLE`) and a writer takes the lease with a *conditional
update* of that row (``holder = ''`` or the lease expired). Two writers racing for it update the
same row, Lance's conflict check lets exactly one commit win, and the loser's retry re-evaluates the
condition and updates nothing. The lease expires after :attr:`WriteLease.LEASE_S` seconds so that
a writer that died frees the store; a live holder renews it in a background thread. Clocks of the
machines must agree to well under the lease (NTP does).

On a backend that ignores ``If-None-Match`` (some S3 look-alikes) a concurrent commit silently
overwrites another; :func:`commits_are_atomic` detects that by committing twice on the same base
version, which is why ``Store.init`` refuses such a store and ``Store.open`` warns.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .errors import StoreBusyError
from .validation import sql_str

LEASE_TABLE = "write_lease"
LEASE_KEY = "write"
LEASE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("holder", pa.string(), nullable=False),
        pa.field("expires_ms", pa.int64(), nullable=False),
    ]
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class WriteLease:
    """An exclusive, expiring lease on a store, held in a row of a Lance table.

    ``table`` returns the held handle of the lease table; ``retry`` runs a write through the store's
    conflict retries. Not re-entrant: :meth:`Store.write_lock` counts the depth."""

    LEASE_S = 30.0
    RENEW_S = 10.0
    WAIT_S = 120.0
    POLL_MAX_S = 0.5

    def __init__(self, table: Callable[[], Any], retry: Callable[[Callable[[], Any]], Any], uri: str):
        self.table = table
        self.retry = retry
        self.uri = uri
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._stop: threading.Event | None = None
        self._renewer: threading.Thread | None = None

    def _try_take(self) -> bool:
        """One conditional update, without Lance's conflict retries: a writer that loses the race
        to another taker goes back to polling at once instead of backing off inside Lance."""
        now = _now_ms()
        where = f"key = {sql_str(LEASE_KEY)} AND (holder = '' OR expires_ms < {now})"
        values = {"holder": sql_str(self.holder), "expires_ms": str(now + int(self.LEASE_S * 1000))}
        try:
            result = self.table().to_lance().update(values, where=where, conflict_retries=0)
        except Exception as exc:  # noqa: BLE001 - lance raises OSError/RuntimeError on a commit conflict
            if "conflict" in str(exc).lower() or "retry" in str(exc).lower():
                return False
            raise
        return int(result["num_rows_updated"]) > 0

    def _current(self) -> tuple[str, int]:
        rows = self.table().search().where(f"key = {sql_str(LEASE_KEY)}").select(["holder", "expires_ms"]).to_list()
        live = [(r["holder"], int(r["expires_ms"])) for r in rows if r["holder"]]
        return max(live, key=lambda r: r[1]) if live else ("", 0)

    def acquire(self) -> None:
        """Take the lease, waiting (polling by reads, which commit nothing) up to ``WAIT_S``."""
        deadline = time.monotonic() + self.WAIT_S
        delay = 0.02
        while True:
            holder, expires = self._current()
            if (not holder or expires < _now_ms()) and self._try_take():
                break
            if time.monotonic() > deadline:
                raise StoreBusyError(
                    f"the store at {self.uri} is busy: writer {holder or 'unknown'} holds its write lease;"
                    f" waited {self.WAIT_S:.0f} s, try again (a dead writer's lease expires after {self.LEASE_S:.0f} s)"
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, self.POLL_MAX_S)
        self._start_renewing()

    def _start_renewing(self) -> None:
        stop = threading.Event()
        self._stop = stop

        def renew() -> None:
            while not stop.wait(self.RENEW_S):
                where = f"key = {sql_str(LEASE_KEY)} AND holder = {sql_str(self.holder)}"
                try:
                    self.table().update(where=where, values={"expires_ms": _now_ms() + int(self.LEASE_S * 1000)})
                except Exception:  # noqa: BLE001 - a missed renewal is retried; the lease lasts 3 periods
                    continue

        self._renewer = threading.Thread(target=renew, name="continuity-lease", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self._stop = self._renewer = None
        where = f"key = {sql_str(LEASE_KEY)} AND holder = {sql_str(self.holder)}"
        self.retry(lambda: self.table().update(where=where, values={"holder": "", "expires_ms": 0}))


def seed_lease(table: Any) -> None:
    """Give a new lease table its one row. Two nodes seeding at once may both insert it: the
    lease stays exclusive (a conditional update takes every matching row, so racers still conflict)."""
    if table.count_rows(f"key = {sql_str(LEASE_KEY)}") == 0:
        table.add([{"key": LEASE_KEY, "holder": "", "expires_ms": 0}])


def commits_are_atomic(db: Any, options: dict[str, str], writers: int = 4) -> bool:
    """Race ``writers`` appends, all on the same base version of a scratch table, released at once:
    an object store that honours conditional PUTs keeps every one (the losers rebase), one that
    ignores them lets some overwrite the same manifest and keeps fewer. A race, so a lucky unsafe
    store may pass; a safe one never fails."""
    import lance
    from lance.fragment import write_fragments

    name = f"_commit_probe_{uuid.uuid4().hex[:8]}"
    table = db.create_table(name, schema=pa.schema([("x", pa.int64())]))
    try:
        dataset = table.to_lance()
        base = dataset.version
        fragments = [
            write_fragments(pa.table({"x": [i]}), dataset.uri, storage_options=options) for i in range(writers)
        ]
        start = threading.Barrier(writers)
        failures: list[BaseException] = []

        def commit(frags: Any) -> None:
            start.wait()
            try:
                lance.LanceDataset.commit(
                    dataset.uri, lance.LanceOperation.Append(frags), read_version=base, storage_options=options
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
                failures.append(exc)

        threads = [threading.Thread(target=commit, args=(f,)) for f in fragments]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return int(lance.dataset(dataset.uri, storage_options=options).count_rows()) == writers
    finally:
        db.drop_table(name, ignore_missing=True)
