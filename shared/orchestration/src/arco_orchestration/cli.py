"""``arco-orchestration migrate``: upgrade the database of ``ARCO_DATABASE_URL`` to head."""

from __future__ import annotations

import argparse
import sys

from arco_orchestration.db import database_url_from_env, make_engine, normalise_url
from arco_orchestration.migrate import current_revision, head_revision, upgrade


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arco-orchestration")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="upgrade the database schema to head")
    migrate.add_argument("--database-url", help="defaults to ARCO_DATABASE_URL or local SQLite")
    commands.add_parser("heads", help="print the head revision")
    args = parser.parse_args(argv)
    if args.command == "heads":
        print(head_revision())
        return 0
    url = normalise_url(args.database_url or database_url_from_env())
    engine = make_engine(url)
    try:
        upgrade(engine)
        print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
