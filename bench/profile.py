"""Where a task's CPU goes: runs no-op tasks through the local stack on PostgreSQL and reads
each process's CPU time (``/proc/<pid>/stat``, user + system) before and after, so the figure
per task and per component does not depend on how busy the machine is. With ``--py-spy DIR``
it also samples every service with py-spy while the tasks run and prints each service's
hottest functions (self time, and the frames of ours that hold the most time).

Run: ``PYTHONPATH=. .venv/bin/python -m bench.profile --tasks 1000 [--py-spy /tmp/prof]``."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.bench_worker import TASK_KEYS
from bench.run import BenchStack
from bench.run import _wait_all_terminal as wait_all_terminal
from bench.support import DEFAULT_POSTGRES

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu(database: str) -> float:
    """CPU of the PostgreSQL backends serving ``database`` (their command line names it), so
    other work on the same server does not count. The stack's pools keep their connections,
    so its backends live through the measurement."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f" {database} " not in (entry / "cmdline").read_text():
                continue
            total += cpu_seconds(int(entry.name))
        except OSError:
            continue
    return total


def _py_spy() -> str:
    """py-spy of this environment (a dev dependency), else the one on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def trigger_independent(bench: BenchStack, keys: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: bench.client.trigger_run({"selection": [key]}), keys))


def top_frames(raw: Path, limit: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Self time by function, and inclusive time by our own frames, in % of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        idle = frames[-1].startswith(("select (", "poll (", "epoll_wait", "_worker (", "wait ("))
        if idle:
            continue
        total += count
        own[_short(frames[-1])] += count
        for name in {_short(frame) for frame in frames if "arco" in frame}:
            inclusive[name] += count
    if not total:
        return [], []

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(limit)]

    return share(own), share(inclusive)


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for marker in ("site-packages/", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--wide", action="store_true", help="one run of all tasks instead")
    parser.add_argument("--py-spy", type=Path, default=None, help="folder for py-spy samples")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="arco-profile-"))
    bench = BenchStack("postgres", data_dir, args.postgres)
    spies: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        keys = list(TASK_KEYS[: args.tasks])
        trigger_independent(bench, keys[:100])  # warm-up: imports, caches, pools
        wait_all_terminal(bench, timeout=300)
        pids = {service.spec.name: service.process.pid for service in bench.stack.services}
        if args.py_spy:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            for name, pid in pids.items():
                out = args.py_spy / f"{name}.txt"
                spy = subprocess.Popen(  # noqa: S603 - a fixed tool
                    [
                        _py_spy(),
                        "record",
                        "-p",
                        str(pid),
                        "--format",
                        "raw",
                        "-r",
                        "200",
                        "-o",
                        str(out),
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                spies.append((name, spy, out))
            time.sleep(1)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        database = bench.env["ARCO_DATABASE_URL"].rsplit("/", 1)[1]
        pg_before, me_before = postgres_cpu(database), time.process_time()
        started = time.monotonic()
        if args.wide:
            bench.client.trigger_run({"selection": keys})
        else:
            trigger_independent(bench, keys)
        wait_all_terminal(bench, timeout=900)
        wall = time.monotonic() - started
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        cpu = {name: after[name] - before[name] for name in pids}
        cpu["postgres"] = postgres_cpu(database) - pg_before
        cpu["bench client"] = time.process_time() - me_before
        print(f"{args.tasks} tasks in {wall:.1f} s: {args.tasks / wall:.1f} tasks/s")
        print("| component | CPU ms per task |\n|---|---|")
        for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
            print(f"| {name} | {1000 * seconds / args.tasks:.2f} |")
        print(f"| **total** | **{1000 * sum(cpu.values()) / args.tasks:.2f}** |")
    finally:
        for _, spy, _ in spies:
            spy.send_signal(2)
        for _, spy, _ in spies:
            spy.wait(timeout=60)
        bench.close()
    for name, _, out in spies:
        if not out.exists():
            continue
        own, ours = top_frames(out, args.top)
        print(f"\n## {name}: self time, % of busy samples")
        for frame, pct in own:
            print(f"{pct:5.1f}  {frame}")
        print(f"\n## {name}: our frames, inclusive %")
        for frame, pct in ours:
            print(f"{pct:5.1f}  {frame}")


if __name__ == "__main__":
    main()
