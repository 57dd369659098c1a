"""The usage hot path's plain-SQL helper: the same driver wrapper the ledger uses."""

from __future__ import annotations

from creditgate.storage.driver import Driver as Sql

__all__ = ["Sql"]
