"""``arco-dispatcher``: check the configuration and schema, then serve (default port 8081)."""

from __future__ import annotations

import sys

from arco_dispatch.startup import EXIT_REFUSED, parse_service_args, prepare, serve
from arco_dispatcher.app import create_app
from arco_dispatcher.settings import DispatcherSettings
from arco_logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``arco-dispatcher``; returns the exit status (2: refused to start)."""
    parse_service_args("arco-dispatcher", __doc__, argv or [])
    configure_logging()
    prepared = prepare("arco-dispatcher", DispatcherSettings)
    if prepared is None:
        return EXIT_REFUSED
    settings, db = prepared
    serve(create_app(settings, db), settings)
    return 0


def console_main() -> None:
    """The ``arco-dispatcher`` console script: the process's arguments, its exit status."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console_main()
