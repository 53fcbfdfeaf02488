"""``python -m arco_envelope schema DIR``: write the JSON Schemas of the wire models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arco_envelope.schemas import write_schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arco_envelope")
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="write one JSON Schema per wire model into DIR")
    schema.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    for path in write_schemas(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
