"""``arco-sweeper``: check the configuration and schema, then serve (default port 8082)."""

from __future__ import annotations

import sys

from arco_dispatch.startup import EXIT_REFUSED, prepare, serve
from arco_logs import configure_logging
from arco_sweeper.app import create_app
from arco_sweeper.settings import SweeperSettings


def main() -> int:
    """Entry point of ``arco-sweeper``; returns the exit status (2: refused to start)."""
    configure_logging()
    prepared = prepare("arco-sweeper", SweeperSettings)
    if prepared is None:
        return EXIT_REFUSED
    settings, db = prepared
    serve(create_app(settings, db), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
