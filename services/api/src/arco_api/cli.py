"""``arco-api``: check the configuration and schema, then serve on ARCO_HTTP_PORT."""

from __future__ import annotations

import argparse
import sys

import uvicorn
from pydantic import ValidationError

from arco_api.app import create_app
from arco_api.settings import ApiSettings
from arco_logs import configure_logging
from arco_orchestration.db import Database
from arco_orchestration.migrate import SchemaNotCurrent, require_current_schema

CONFIGURATION_HELP = (
    "Configured by environment variables only (ARCO_DATABASE_URL, ARCO_JWT_SECRET, "
    "ARCO_TASK_TOKEN_SECRET, ARCO_HTTP_PORT, ...): see .env.example, docs/operations.md and "
    "docs/auth.md. `arco-stack up` runs every service with a working local configuration."
)


def main(argv: list[str] | None = None) -> int:
    """Check the configuration and serve; ``argv`` are the command-line arguments (none by
    default: in-process callers such as tests pass none). Returns the exit status."""
    # --help is answered before any configuration is read.
    argparse.ArgumentParser(
        prog="arco-api", description=__doc__, epilog=CONFIGURATION_HELP
    ).parse_args(argv or [])
    configure_logging()
    try:
        settings = ApiSettings()
    except ValidationError as exc:
        print(f"arco-api: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if problems := settings.problems():
        print("arco-api: refusing to start:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    for warning in settings.warnings():
        print(f"arco-api: warning (accepted only in the dev posture): {warning}", file=sys.stderr)
    db = Database.from_url(settings.database_url or None, application_name="arco-api")
    try:
        require_current_schema(db.engine)
    except SchemaNotCurrent as exc:
        print(f"arco-api: refusing to start: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, db)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def console_main() -> None:
    """The ``arco-api`` console script: the process's arguments, its exit status."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console_main()
