"""Checkpointing SQLite's write-ahead log on a thread of its own.

By default SQLite checkpoints inside whichever commit pushes the log past 1,000 pages: that commit
then copies the log into the database file and waits for two fsyncs, and with the group-commit
writer that commit is the ledger's, so every caller of the batch waits too. Here every connection
of the engine turns automatic checkpoints off and this thread runs them instead, a few times a
second while there are writes. The sqlite3 module releases the GIL while SQLite works, so the
checkpoint runs on the second core while the writer carries on (SQLite's documentation suggests
exactly this for applications that cannot afford checkpoint pauses on their write path).

A checkpoint is not started by every commit: it copies pages, fsyncs the file and fills the
second core's caches right when the request that committed still has work to do (and, in the
benchmark, the upstream and the client run on that core). It waits for many commits, or for a
second after the first commit it has not copied, whichever comes first: under load the log is
copied every few hundred commits, and at a trickle about once a second, not after each request.

Durability is unchanged: a commit is in the log when it returns, exactly as before (WAL with
``synchronous=NORMAL``); a checkpoint only moves committed pages into the main file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Final

from creditgate.runtime import LazyThread

# Commits that start a checkpoint at once: the log then stays a few megabytes under load, and
# each pass copies many batches' pages at once.
CHECKPOINT_COMMITS: Final = 256
# The longest a commit waits to be copied when fewer than CHECKPOINT_COMMITS follow it.
CHECKPOINT_DELAY_S: Final = 1.0
# A passive checkpoint never waits for the writer, so under a writer that never pauses the log
# might never get back to its start. Past this many frames (16 MiB of 4 KiB pages) the
# thread waits for the write lock once and restarts the log (as the writer would on its own).
WAL_FRAMES_RESTART: Final = 4096
# While a restart waits (for the write lock, or for readers of an older snapshot to finish) it
# holds off new writers, so it gives up soon and tries again on a later pass instead.
RESTART_WAIT_MAX_MS: Final = 200

log = logging.getLogger(__name__)


class WalCheckpointer:
    """One thread that checkpoints the log of the SQLite file at ``path`` after writes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._commits = 0  # since the last checkpoint started; only a trigger, need not be exact
        self._dirty = threading.Event()  # a commit is waiting to be copied
        self._due = threading.Event()  # CHECKPOINT_COMMITS of them, or closing: copy now
        self._thread = LazyThread("creditgate-wal-checkpoint", self._run)

    def wake(self) -> None:
        """A write transaction committed: checkpoint after enough of them, or within a second."""
        self._thread.start()
        self._commits += 1
        # Only the first commit and the one that makes the count wake the thread: an Event's
        # set() on every commit would be a cross-core wake-up per write.
        if self._commits == 1:
            self._dirty.set()
        elif self._commits == CHECKPOINT_COMMITS:
            self._due.set()

    def close(self) -> None:
        """Stop the thread after a last checkpoint of what is committed."""
        self._thread.stop(self._wake_now)

    def _wake_now(self) -> None:
        self._dirty.set()
        self._due.set()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=RESTART_WAIT_MAX_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        try:
            while True:
                self._dirty.wait()
                self._due.wait(CHECKPOINT_DELAY_S)
                self._dirty.clear()
                self._due.clear()
                self._commits = 0
                self._checkpoint(connection)
                if self._thread.stopping.is_set():
                    return
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            # Until a connection has read the file, wal_checkpoint answers "not in WAL mode" and
            # does nothing; this read is cheap.
            connection.execute("PRAGMA journal_mode").fetchone()
            _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > WAL_FRAMES_RESTART:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as error:
            # The next pass tries again; a log that is checkpointed late costs disk, not data.
            log.warning("WAL checkpoint of %s failed: %s", self._path, error)
