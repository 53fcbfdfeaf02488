"""``arco-sweeper``: check the configuration and schema, then serve (default port 8082)."""

from __future__ import annotations

import sys

from arco_dispatch.startup import EXIT_REFUSED, parse_service_args, prepare, serve
from arco_logs import configure_logging
from arco_sweeper.app import create_app
from arco_sweeper.settings import SweeperSettings


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``arco-sweeper``; returns the exit status (2: refused to start)."""
    parse_service_args("arco-sweeper", __doc__, argv or [])
    configure_logging()
    prepared = prepare("arco-sweeper", SweeperSettings)
    if prepared is None:
        return EXIT_REFUSED
    settings, db = prepared
    serve(create_app(settings, db), settings)
    return 0


def console_main() -> None:
    """The ``arco-sweeper`` console script: the process's arguments, its exit status."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console_main()
