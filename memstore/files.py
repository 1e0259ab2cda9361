"""Atomic file publication with ordinary permissions.

Outputs are written to a temporary file in the target folder and renamed into place, so a reader
never sees half a file. ``tempfile.mkstemp`` makes that file 0600 whatever the umask; published
files get the mode a plain ``open()`` would give (0666 less the umask), so a shared NAS or a web
server can read them.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Give ``tmp`` the permissions of a newly created file and rename it onto ``target``."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, target)
    return Path(target)
