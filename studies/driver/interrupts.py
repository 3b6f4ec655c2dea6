"""Ctrl-C (SIGINT) and SIGTERM during a study: stop cleanly, keep every finished result, end non-zero.

Tune stops an experiment cleanly on SIGINT (running trials stopped, the experiment state saved for
`--resume`) and does the same on SIGUSR1, then returns from `fit()` as if it had finished. The study
would go on with its next phase and report success. So while a study runs, its own handler takes
SIGINT and SIGTERM (cluster schedulers and `ray job stop` send SIGTERM): the first one is passed to Tune
as SIGUSR1 and remembered, and the study ends after the experiment with `StudyInterrupted`; a second
one stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Self

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StudyInterrupted(Exception):
    """The study stopped on a signal; its finished results are kept and it can be resumed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class GracefulStop:
    """Context manager of a running study: `check()` raises StudyInterrupted once a signal has come."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._tune_env: str | None = None

    def __enter__(self) -> Self:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set there; a study run in a thread is stopped by its owner
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        # Tune would otherwise replace the SIGINT handler during fit() with its own, which ends the
        # experiment without the study knowing; it keeps handling SIGUSR1, which is what we send it.
        self._tune_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._previous:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._tune_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._tune_env

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping the study once the running trials are stopped and "
              f"saved (finished epochs are kept); send it again to stop at once", flush=True)
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.raise_signal(signal.SIGUSR1)  # Tune's clean stop (a stale handler after fit() is harmless)

    def check(self) -> None:
        if self.signum is not None:
            raise StudyInterrupted(self.signum)
