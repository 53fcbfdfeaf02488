"""docs/getting-started.md, run literally: every file it shows is written into a fresh
temporary folder and every command it shows is run there with bash, against a real stack
(real processes, SQLite), so the tutorial cannot rot.

Each code block of the page is preceded by a marker comment saying what to do with it:

- ``<!-- file: NAME -->``: write the block to NAME;
- ``<!-- background: ready="TEXT" -->``: start the command and wait until it prints TEXT
  (``arco-stack up``); it is stopped when the test ends;
- ``<!-- run: expect="TEXT" -->``: run the command; it must exit 0 and print TEXT;
- ``<!-- not-run: REASON -->``: skipped, for the reason given (installing the project, docker).

The only difference from a reader's terminal: the environment has this project's ``.venv/bin``
first on ``PATH`` (what the page's install step does) and ``ARCO_STACK_FREE_PORTS=1`` so the
stack does not collide with other stacks on this machine (the page's commands find the ports).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
DEADLINE_SECS = 240.0
_BLOCK = re.compile(
    r"^(?:<!-- (?P<kind>[a-z-]+):\s*(?P<arg>.*?)\s*-->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)^```\n",
    re.MULTILINE | re.DOTALL,
)
_QUOTED = re.compile(r'^(?:ready|expect)="(?P<text>.*)"$')


@dataclass(frozen=True)
class Block:
    kind: str
    arg: str
    body: str

    @property
    def text(self) -> str:
        match = _QUOTED.match(self.arg)
        assert match is not None, f"marker {self.kind} needs a quoted text: {self.arg!r}"
        return match.group("text").replace('\\"', '"')


def blocks() -> list[Block]:
    found = [
        Block(m.group("kind") or "", m.group("arg") or "", m.group("body"))
        for m in _BLOCK.finditer(PAGE.read_text(encoding="utf-8"))
    ]
    unmarked = [b.body.splitlines()[0] for b in found if b.kind == ""]
    assert not unmarked, f"every code block needs a marker comment; unmarked: {unmarked}"
    return found


def environment() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "ARCO_STACK_FREE_PORTS": "1",
    }


@dataclass
class Background:
    process: subprocess.Popen[bytes]
    output: Path


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, list[Background]]]:
    started: list[Background] = []
    yield tmp_path, started
    for background in started:
        # The command runs in its own process group: stop the group (bash and arco-stack).
        if background.process.poll() is None:
            os.killpg(background.process.pid, signal.SIGTERM)
            try:
                background.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(background.process.pid, signal.SIGKILL)
                background.process.wait()


def test_every_block_is_marked_and_the_page_has_the_authors_path() -> None:
    kinds = [block.kind for block in blocks()]
    assert set(kinds) <= {"file", "background", "run", "not-run"}
    assert kinds.count("background") == 1
    assert kinds.count("run") >= 4


def test_the_tutorial_runs_as_written(folder: tuple[Path, list[Background]]) -> None:
    work, started = folder
    env = environment()
    timings: list[str] = []
    begin = time.monotonic()
    for block in blocks():
        if block.kind == "file":
            (work / block.arg).write_text(block.body, encoding="utf-8")
        elif block.kind == "background":
            output = work / f"background-{len(started)}.log"
            with output.open("wb") as sink:
                process = subprocess.Popen(  # noqa: S603 - the page's command, via bash
                    ["bash", "-c", block.body],  # noqa: S607
                    cwd=work,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            background = Background(process, output)
            started.append(background)
            deadline = time.monotonic() + DEADLINE_SECS
            while block.text not in output.read_text(errors="replace"):
                assert process.poll() is None, output.read_text(errors="replace")
                assert time.monotonic() < deadline, f"no {block.text!r} from {block.body}"
                time.sleep(0.2)
        elif block.kind == "run":
            started_at = time.monotonic()
            result = subprocess.run(  # noqa: S603 - the page's command, via bash
                ["bash", "-e", "-o", "pipefail", "-c", block.body],  # noqa: S607
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=DEADLINE_SECS,
                check=False,
            )
            shown = f"$ {block.body}\n{result.stdout}{result.stderr}"
            assert result.returncode == 0, shown
            assert block.text in result.stdout + result.stderr, shown
            timings.append(f"{time.monotonic() - started_at:5.1f}s  {block.body.splitlines()[0]}")
    for background in started:
        assert background.process.poll() is None, background.output.read_text()
    print(f"tutorial ran in {time.monotonic() - begin:.1f}s:", *timings, sep="\n  ")
