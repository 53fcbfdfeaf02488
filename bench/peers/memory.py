"""Memory of whole process trees, sampled from /proc while a benchmark runs.

Both systems are measured with the same sampler: each named root process with every process
it started (Airflow's executor workers and task processes, our services), so "the whole
deployment" means the same on both sides. PSS (``/proc/PID/smaps_rollup``) shares the pages
forked children have in common between them instead of counting them once per process, which
RSS would; RSS is the fallback where smaps_rollup cannot be read."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def parent_ids() -> dict[int, int]:
    """Every process id -> its parent's id, read from /proc/PID/stat."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def tree(root: int, parents: Mapping[int, int]) -> list[int]:
    """``root`` and all its descendants among ``parents``."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kib(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return None


def process_memory_kib(pid: int) -> tuple[int, int | None] | None:
    """(RSS, PSS) of ``pid`` in KiB (PSS ``None`` where smaps_rollup is unreadable); ``None``
    when the process is gone."""
    base = PROC / str(pid)
    try:
        rss = _kib((base / "status").read_text(), "VmRSS:")
    except OSError:
        return None
    if rss is None:  # a zombie has no memory left
        return None
    try:
        pss = _kib((base / "smaps_rollup").read_text(), "Pss:")
    except OSError:
        pss = None
    return rss, pss


def peak_hwm_mb(pid: int) -> float | None:
    """The kernel's own peak RSS (``VmHWM``) of one process, in MB."""
    try:
        kib = _kib((PROC / str(pid) / "status").read_text(), "VmHWM:")
    except OSError:
        return None
    return None if kib is None else round(kib / 1024, 1)


@dataclass
class TreeSampler:
    """Samples the process trees of ``roots`` (name -> root pid) every ``interval`` seconds in
    a thread; keeps, per tree, the peak RSS and PSS sums, and the peak of the sum over all
    trees (taken at one instant, not the sum of peaks reached at different times)."""

    roots: dict[str, int]
    interval: float = 0.5
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    peak_pss_kib: dict[str, int] = field(default_factory=dict)
    peak_total_pss_kib: int = 0
    peak_total_rss_kib: int = 0
    peak_processes: int = 0
    samples: int = 0
    uses_pss: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        parents = parent_ids()
        total_rss = total_pss = processes = 0
        for name, root in self.roots.items():
            rss = pss = 0
            for pid in tree(root, parents):
                memory = process_memory_kib(pid)
                if memory is None:
                    continue
                processes += 1
                rss += memory[0]
                if memory[1] is None:
                    self.uses_pss = False
                pss += memory[0] if memory[1] is None else memory[1]
            self.peak_rss_kib[name] = max(self.peak_rss_kib.get(name, 0), rss)
            self.peak_pss_kib[name] = max(self.peak_pss_kib.get(name, 0), pss)
            total_rss += rss
            total_pss += pss
        self.peak_total_pss_kib = max(self.peak_total_pss_kib, total_pss)
        self.peak_total_rss_kib = max(self.peak_total_rss_kib, total_rss)
        self.peak_processes = max(self.peak_processes, processes)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()

    def figures(self) -> dict[str, object]:
        def mb(kib: int) -> float:
            return round(kib / 1024, 1)

        return {
            "peak_tree_rss_mb": {name: mb(kib) for name, kib in self.peak_rss_kib.items()},
            "peak_tree_pss_mb": {name: mb(kib) for name, kib in self.peak_pss_kib.items()},
            "peak_total_pss_mb": mb(self.peak_total_pss_kib),
            "peak_total_rss_mb": mb(self.peak_total_rss_kib),
            "peak_processes": self.peak_processes,
            "samples": self.samples,
            "interval_s": self.interval,
            "measure": "pss" if self.uses_pss else "rss",
        }
