"""Every table of every part, on one MetaData: what migrations compare against.

Each part keeps its tables in its own module on ``creditgate.storage.schema.metadata``; importing
this module registers them all.
"""

from __future__ import annotations

import importlib
import pkgutil

import creditgate.storage as storage_package
from creditgate.storage.schema import metadata

# Modules named tables_<part>.py (tables_api.py, tables_pricing.py, ...) are picked up here so
# that adding a part's tables needs no edit to this file.
for _module in pkgutil.iter_modules(storage_package.__path__):
    if _module.name.startswith("tables_"):
        importlib.import_module(f"creditgate.storage.{_module.name}")

__all__ = ["metadata"]
