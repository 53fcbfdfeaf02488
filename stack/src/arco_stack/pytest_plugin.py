"""pytest plugin: the ``arco_stack`` fixture runs a whole stack around the worker under test.

Installing arco-stack registers it (entry point ``pytest11``); ``pytest_plugins =
["arco_stack.pytest_plugin"]`` works too. Name the worker with ``--arco-worker MODULE:ATTR``
(or the ini key ``arco_worker``), or ``--arco-worker-url URL`` for one already running.
SQLite in a temporary folder by default; ``--arco-database-url URL`` or ``--arco-postgres
container`` (testcontainers, image ``$ARCO_TEST_POSTGRES_IMAGE``, default ``postgres:16``) for
PostgreSQL. A failing test that used the fixture shows the tail of each service's log.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from arco_stack.harness import ArcoStack, HarnessError, HarnessOptions
from arco_stack.processes import StackError

_RUNNING = pytest.StashKey[ArcoStack]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("arco-stack", "a stack around the worker under test (arco_stack)")
    group.addoption(
        "--arco-worker",
        metavar="MODULE:ATTR",
        help="the arco_worker.Worker under test, started as `arco-worker --worker MODULE:ATTR`",
    )
    group.addoption(
        "--arco-worker-url",
        metavar="URL",
        help="a worker already running (any language) instead; it must expect the dispatch "
        "secret in $ARCO_FLOW_WORKER_DISPATCH_SECRET, tenant `local` and workspace `demo`",
    )
    group.addoption("--arco-database-url", metavar="URL", help="PostgreSQL to use (migrated)")
    group.addoption(
        "--arco-postgres",
        choices=["container"],
        help="`container`: PostgreSQL in a container started through testcontainers",
    )
    parser.addini("arco_worker", "the worker under test, MODULE:ATTR (like --arco-worker)")


def _options(config: pytest.Config) -> HarnessOptions:
    worker_url: str | None = config.getoption("--arco-worker-url")
    worker: str | None = config.getoption("--arco-worker")
    if worker is None and worker_url is None:
        worker = str(config.getini("arco_worker") or "") or None
    return HarnessOptions(
        worker=worker,
        worker_url=worker_url,
        database_url=config.getoption("--arco-database-url"),
        postgres_container=config.getoption("--arco-postgres") == "container",
        worker_dir=config.rootpath,
    )


def _log_sections(stack: ArcoStack) -> str:
    return "\n".join(
        f"--- {name} log (last lines) ---\n{text}" for name, text in stack.service_logs().items()
    )


@pytest.fixture(scope="session")
def arco_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArcoStack]:
    """api, dispatcher, sweeper and the worker under test as real processes on free ports."""
    try:
        stack = ArcoStack(_options(request.config), tmp_path_factory.mktemp("arco-stack"))
    except HarnessError as exc:
        pytest.fail(f"arco_stack: {exc}", pytrace=False)
    try:
        stack.start()
    except (HarnessError, StackError) as exc:
        pytest.fail(f"arco_stack could not start: {exc}\n{_log_sections(stack)}", pytrace=False)
    request.config.stash[_RUNNING] = stack
    try:
        yield stack
    finally:
        del request.config.stash[_RUNNING]
        stack.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    stack = item.config.stash.get(_RUNNING, None)
    uses_stack = "arco_stack" in getattr(item, "fixturenames", ())
    if report.failed and stack is not None and uses_stack:
        for name, text in stack.service_logs().items():
            report.sections.append((f"arco-stack {name} log (last lines)", text))
    return report
