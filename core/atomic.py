"""Write a whole file or nothing: beside it under a temporary name, then rename (one place for every output)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(fh)` fills a temp file in `path`'s folder, which then replaces `path` (never a half-written file).

    A short temp name: a long output name plus a suffix could exceed the file system's name limit.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".inkscribe-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
