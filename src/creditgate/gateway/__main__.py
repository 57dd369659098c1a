"""Serve the gateway alone: ``python -m creditgate.gateway --port 8080``.

The database comes from ``CREDITGATE_DATABASE_URL``; Redis-backed limits from
``CREDITGATE_REDIS_URL``. Used by the benchmark and the multi-process tests; ``creditgate serve``
serves the full API with the gateway included.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m creditgate.gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--database-url", default=None)
    arguments = parser.parse_args()
    serve(arguments.database_url, arguments.host, arguments.port)


def serve(database_url: str | None, host: str, port: int) -> None:
    """Serve the gateway until stopped (also what benchmarks/gateway_steps.py runs, instrumented)."""
    import uvicorn

    from creditgate.bootstrap import bootstrap
    from creditgate.gateway.routes import create_gateway_app
    from creditgate.runtime import freeze_startup_heap

    services = bootstrap(database_url, migrate=False)
    try:
        app = create_gateway_app(services)
        freeze_startup_heap()
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                    loop="uvloop", http="httptools")
    finally:
        services.close()


if __name__ == "__main__":
    main()
