"""Real HTTP servers on loopback for end-to-end tests: the same background uvicorn the demo uses."""

from __future__ import annotations

from creditgate.api.local_server import free_port
from creditgate.api.local_server import serve_in_background as serve

__all__ = ["free_port", "serve"]
