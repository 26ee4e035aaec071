"""SIGINT and SIGTERM as a request to stop at the next safe point, written once.

Long work (a block of compiled sampler steps, an optimizer step) cannot stop safely in the
middle, so the first SIGINT (Ctrl-C) or SIGTERM (what batch systems send) only sets a flag that
the run checks at its next boundary, where it saves and stops.  A repeated signal interrupts at
once (``KeyboardInterrupt``).  Handlers can only be installed from the main thread; elsewhere
the context does nothing.  A signal that is ignored when the context is entered stays ignored:
whoever started the process chose that (a shell starts background jobs of a script with SIGINT
ignored so that Ctrl-C at the terminal does not reach them; the scan's worker processes ignore
it because the parent handles Ctrl-C), as Python itself does at start-up.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

__all__ = ["StopRequest"]


class StopRequest:
    """Context manager: the first SIGINT/SIGTERM sets :attr:`signum`; a repeat interrupts.

    Parameters
    ----------
    notice : str, optional
        Printed on stderr (after the signal's name) when the first signal arrives.
    abort_on_other : bool
        Whether a second signal of the *other* kind also interrupts at once (default True).
        False suits processes whose launcher follows SIGINT with SIGTERM (torchrun): the
        pending stop then still finishes its checkpoint.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notice: str | None = None, abort_on_other: bool = True) -> None:
        self.signum: int | None = None
        self.notice = notice
        self.abort_on_other = abort_on_other
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        """``SIGINT`` or ``SIGTERM`` once requested, else an empty string."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None and (self.abort_on_other or self.signum == signum):
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            if self.notice:
                print(f"\n{self.signal_name}: {self.notice}", file=sys.stderr)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # ignored by whoever started this process: keep it so
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
