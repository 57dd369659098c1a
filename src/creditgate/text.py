"""The shapes of text the system stores, shared by the REST schemas and the use cases below them.

Stored free text has no control characters: PostgreSQL refuses NUL in text (SQLite keeps it, so
without one rule the two databases would answer differently), and a control character has no
place in a name, a reference or a URL that is shown back to people.
"""

from __future__ import annotations

import re
from typing import Final

ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f]*$"
IDS: Final = re.compile(ID_PATTERN)
CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]")
