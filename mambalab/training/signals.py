"""SIGTERM/SIGINT: ask the loop to checkpoint and exit at the end of the current step.

A second signal while the first is being handled restores the default handler's behaviour (a
user pressing Ctrl-C twice means it). The loop polls `requested`; across ranks it is all-reduced.
"""
from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            self.uninstall()
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received %s: checkpointing after this step, then exiting",
                    signal.Signals(signum).name)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a joblib/ray worker): no handlers
                return

    def uninstall(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()
