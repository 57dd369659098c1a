"""The in-process scheduler for ``creditgate serve``: closes due periods and opens due
auto top-ups on a timer (a top-up therefore follows a balance drop within ``interval_s``), then
runs the server's housekeeping chores (such as forgetting usage-event dedup claims past their
retention).

What is due is decided by the injected clock, never by the timer: the timer only says how often
to look (``interval_s``), so a test can move a ManualClock and call :meth:`run_once`. Several
server processes may each run one; the close job's lease lets one of them do the work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from creditgate.billing.close import CloseReport

INTERVAL_S_DEFAULT: Final = 10.0
INTERVAL_S_MIN: Final = 0.01
log = logging.getLogger(__name__)


class BillingScheduler:
    def __init__(self, billing: Any, *, interval_s: float = INTERVAL_S_DEFAULT,
                 chores: Sequence[Callable[[], Any]] = ()) -> None:
        assert interval_s >= INTERVAL_S_MIN
        self.billing = billing
        self.chores = tuple(chores)
        self.interval_s = interval_s
        self.runs = 0
        self.last_report: CloseReport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="creditgate-billing", daemon=True)
        self._thread.start()

    def run_once(self) -> CloseReport:
        report: CloseReport = self.billing.close_due()
        self.billing.check_topups()
        self.runs += 1
        self.last_report = report
        for error in report.errors:
            log.warning("billing close: %s", error)
        for chore in self.chores:
            try:
                chore()
            except Exception:  # one failing chore must not stop billing or the others
                log.exception("scheduled chore %s failed", getattr(chore, "__name__", chore))
        return report

    def _loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # keep the server alive; the next run retries (the close is idempotent)
                log.exception("billing close run failed")
            if self._stop.wait(self.interval_s):
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
