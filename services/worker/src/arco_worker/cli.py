"""``arco-worker``: serve a :class:`Worker` over HTTP with graceful SIGTERM handling.

``arco-worker`` alone serves the sample handlers (``ARCO_WORKER_SAMPLE_TASKS=true``);
``arco-worker --worker mypackage.tasks:worker`` serves a worker author's handlers.
"""

from __future__ import annotations

import argparse
import sys

from arco_worker.serving import run


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="arco-worker", description=__doc__)
    parser.add_argument(
        "--worker",
        metavar="MODULE:ATTR",
        help="the Worker to serve (default: only the sample tasks, if enabled)",
    )
    parser.add_argument(
        "--worker-dir",
        metavar="DIR",
        help="folder to import the --worker module from (default: the current folder)",
    )
    args = parser.parse_args(argv)
    return run(spec=args.worker, worker_dir=args.worker_dir)


if __name__ == "__main__":
    sys.exit(main())
