"""Regenerate the initial migration from the tables (allowed until the first release).

Run: .venv/bin/python tools/regenerate_migration.py
The PostgreSQL trigger block at the end of 0001 is kept.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from creditgate.storage.database import Database
from creditgate.storage.migrate import MIGRATIONS_PATH

TARGET = MIGRATIONS_PATH / "versions" / "0001_initial.py"
MARKER = "\n\n# On PostgreSQL a trigger"


def main() -> None:
    old = TARGET.read_text() if TARGET.exists() else ""
    tail = old[old.index(MARKER):] if MARKER in old else ""
    for path in (MIGRATIONS_PATH / "versions").glob("0001_*.py"):
        path.unlink()
    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{folder}/blank.db")
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_PATH))
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.revision(config, message="initial", autogenerate=True, rev_id="0001")
        database.dispose()
    generated = next((MIGRATIONS_PATH / "versions").glob("0001_*.py"))
    text = generated.read_text()
    generated.unlink()
    lines = [line for line in text.splitlines() if not line.startswith("Create Date:")]
    TARGET.write_text("\n".join(lines).rstrip() + "\n" + tail)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
