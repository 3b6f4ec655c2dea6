"""A run's console output to a file of its own: a study's trials write their progress, the libraries' warnings
and the output of the programs they start (the Java caption tokenizer) to one log per trial instead of Ray's
shared worker logs and the study's console."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def output_to(path: str | Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes and C code follow)
    to `path`, appended, until the block ends; then restore them. None: leave the output where it is."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(path, "ab", buffering=0) as log:
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
