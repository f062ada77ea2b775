"""A running cell's heartbeat: a thread that beats for the cell's claim in the ledger every interval, and fences the
claim: once the ledger says the claim is lost, it stops the cell in the worker's main thread. Knows nothing of Optuna:
the ledger hands it ``beat``, which records one beat and says whether the claim still holds.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

FENCE_SIGNAL = signal.SIGUSR1
"""The signal a worker's heartbeat thread sends its own process when the cell's claim is lost (see :class:`Heartbeat`;
SIGUSR2 is submitit's preemption signal)."""


class ClaimLost(KeyboardInterrupt):
    """Raised in a worker's main thread when its heartbeat finds the cell's claim lost (see :class:`Heartbeat`)."""


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds from a thread while the cell runs (``with Heartbeat(...)``).

    A worker on another machine whose beats came too late may have had its cell declared dead and handed to another
    worker. ``beat`` records a beat and reads the claim back: once it returns False, the claim is lost, ``lost`` is set
    and the main thread is interrupted (KeyboardInterrupt), so this worker stops the cell within one interval instead of
    training it beside its new owner (whose run folder lock, :func:`core.io.folder_lock`, keeps the two apart where the
    file system honours locks).

    The interrupt is a signal of its own, :data:`FENCE_SIGNAL`, handled while the cell runs: a real signal also cuts
    short a sleep or a wait in progress (``_thread.interrupt_main`` does not), and SIGINT is ignored in a worker that a
    script started in the background (``launch.py sweep ... &`` without job control, as in a batch script)."""

    def __init__(self, beat: Callable[[], bool], interval: float, what: str = "the cell") -> None:
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, args=(beat, interval, what), daemon=True)
        self._signalled = False  # whether FENCE_SIGNAL is ours while the cell runs (only the main thread handles it)
        self._previous: Any = signal.SIG_DFL

    def _beat(self, beat: Callable[[], bool], interval: float, what: str) -> None:
        while True:
            try:
                if not beat() and not self._stop.is_set():
                    self.lost = True
                    if self._signalled:
                        os.kill(os.getpid(), FENCE_SIGNAL)
                    else:  # a worker outside the main thread: its next bytecode, once a sleep or wait has ended
                        _thread.interrupt_main()
                    return
            except Exception as exc:  # a busy database must not silence the cell for good: try again next beat
                print(f"heartbeat of {what} failed ({type(exc).__name__}: {exc}); retrying", flush=True)
            if self._stop.wait(interval):
                return

    def __enter__(self) -> Heartbeat:
        if threading.current_thread() is threading.main_thread():
            self._previous, self._signalled = signal.signal(FENCE_SIGNAL, self._claim_lost), True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (and fencing): before this worker itself changes the trial's state."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _claim_lost(self, signum, frame) -> None:
        if not self._stop.is_set():  # a signal handled after the cell ended (and stop()) has nothing left to stop
            raise ClaimLost("the cell's claim was lost: declared dead and handed on elsewhere")

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self.stop()
        if self._signalled:
            signal.signal(FENCE_SIGNAL, signal.SIG_DFL if self._previous is None else self._previous)
        # The claim was lost just as the cell ended, between its last line and here: what comes next (recording the
        # cell, which finds the trial no longer this worker's) says so; the worker goes on with the next cell.
        return exc_type is not None and issubclass(exc_type, ClaimLost)
