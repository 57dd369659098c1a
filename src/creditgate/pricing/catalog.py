"""Where imported price sheets live: a small repository interface and two plain implementations.

The domain never touches storage. The CLI uses :class:`JsonFilePriceCatalog` for now; a database
adapter implementing :class:`PriceCatalog` can replace it without changing any caller.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from creditgate.errors import InvalidInput
from creditgate.pricing._exact import load_json_exact
from creditgate.pricing.meters import DEFAULT_METERS, MeterRegistry
from creditgate.pricing.sheet_import import read_text
from creditgate.pricing.sheets import PriceSheet, SheetEntry


class PriceCatalog(Protocol):
    def load_sheet(self) -> PriceSheet:
        """Every imported provider price, one entry per model."""
        ...

    def save_entries(self, entries: Sequence[SheetEntry]) -> PriceSheet:
        """Store ``entries`` atomically, replacing earlier entries of the same models."""
        ...


class InMemoryPriceCatalog:
    def __init__(self, sheet: PriceSheet | None = None) -> None:
        self._sheet = sheet or PriceSheet()

    def load_sheet(self) -> PriceSheet:
        return self._sheet

    def save_entries(self, entries: Sequence[SheetEntry]) -> PriceSheet:
        self._sheet = self._sheet.merged(entries)
        return self._sheet


class JsonFilePriceCatalog:
    """A JSON file written whole through a temporary file and an atomic rename."""

    def __init__(self, path: Path, *, registry: MeterRegistry = DEFAULT_METERS) -> None:
        self.path = path
        self.registry = registry

    def load_sheet(self) -> PriceSheet:
        if not self.path.exists():
            return PriceSheet()
        data = load_json_exact(read_text(self.path), source=str(self.path))
        return PriceSheet.from_dict(data, registry=self.registry)

    def save_entries(self, entries: Sequence[SheetEntry]) -> PriceSheet:
        sheet = self.load_sheet().merged(entries)
        text = json.dumps(sheet.to_dict(), indent=1, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".prices-", dir=self.path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, self.path)
        except OSError as error:
            raise InvalidInput(f"{self.path}: cannot write the price store ({error.strerror})",
                               param="store") from None
        return sheet
