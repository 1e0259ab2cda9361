"""The Ray cluster an ingest runs on: one named by address, the one this process already joined,
or a small local one started for the run (loopback only, no dashboard, bounded CPUs) and stopped after."""

from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from memstore.errors import ContinuityError, MissingExtraError

LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
# ray.init retries an unreachable address for minutes; a plain TCP probe says so in seconds
PROBE_SECONDS = 5.0


class ClusterError(ContinuityError):
    """The Ray cluster could not be reached or started."""


def import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the part ingest needs)
    except ImportError as exc:
        raise MissingExtraError(
            f"batch ingest needs Ray Data ({exc.name or 'ray'} is missing); install it: pip install 'continuity[ray]'"
        ) from None
    return ray


@contextmanager
def ray_cluster(address: str | None, workers: int) -> Iterator[str]:
    """Connect to ``address`` (or start a local cluster when None) for the duration; yields a label."""
    ray = import_ray()
    if address is None and ray.is_initialized():
        yield "this process's Ray cluster"  # a notebook's or a test's: not ours to stop
        return
    if address is not None:
        _probe(address)
    try:
        with warnings.catch_warnings():
            # lancedb warns at every fork; Ray's fork+exec of its own processes never touches the store
            warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
            warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
            _init(ray, address, workers)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray cluster"
        raise ClusterError(f"could not start or reach {where} ({str(exc).splitlines()[0]}); check --ray") from None
    try:
        yield address or f"local Ray cluster ({workers + 1} CPUs)"
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Refuse a ``host:port`` or ``ray://host:port`` address nothing listens on ("auto" is Ray's to find)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        if address == "auto":
            return
        raise ClusterError(f"--ray {address!r} is not host:port, ray://host:port or auto; give the cluster's address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({reason}); check --ray and that the cluster is up"
        ) from None


def _init(ray: ModuleType, address: str | None, workers: int) -> None:
    if address is None:
        # the workers plus one CPU for the driver's side of the stream (reading rows back, committing)
        ray.init(
            address="local",
            num_cpus=workers + 1,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
