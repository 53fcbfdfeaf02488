"""The memory and Cloud Tasks adapters behind the one interface (design D5; upstream
scenarios 50-52). Cloud Tasks runs the real client with a fake transport, and the tests
assert the exact CreateTask requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.api_core import exceptions as google_errors
from google.cloud import tasks_v2

from arco_dispatch.adapters import make_provider
from arco_dispatch.cloudtasks_provider import CloudTasksProvider, queue_path
from arco_dispatch.http_provider import HttpQueueProvider
from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.message import dispatch_headers
from arco_dispatch.provider import EnqueueResult, EnqueueStatus
from arco_envelope import cloud_task_name
from arco_testkit.dispatching import FakeCloudTasksTransport, client_with, flow_settings

QUEUE = "projects/proj/locations/europe-west1/queues/arco-flow-dispatch"
TARGET = "https://worker.example/dispatch"
BODY = b'{"tenantId":"tenant-a"}'
HEADERS = dispatch_headers("dispatch-secret")
DEADLINE = timedelta(seconds=1800)


def enqueue(provider: MemoryProvider | CloudTasksProvider, name: str) -> EnqueueResult:
    return provider.enqueue(name, TARGET, BODY, HEADERS, DEADLINE)


def test_memory_queue_dedupes_a_name_until_taken_and_fills_up() -> None:
    """51: the same run/task/attempt (one deterministic name) is one entry; a different
    attempt is another; capacity gives QueueFull; taking releases the name."""
    queue = MemoryProvider(capacity=2)
    first = cloud_task_name("dispatch:run1:extract:1")
    second = cloud_task_name("dispatch:run1:extract:2")
    assert enqueue(queue, first) == EnqueueResult(EnqueueStatus.ENQUEUED, message_id=first)
    assert enqueue(queue, first).status is EnqueueStatus.DEDUPLICATED
    assert enqueue(queue, second).status is EnqueueStatus.ENQUEUED
    assert (
        enqueue(queue, cloud_task_name("dispatch:run1:load:1")).status is EnqueueStatus.QUEUE_FULL
    )
    taken = queue.take()
    assert taken is not None
    assert taken.name == first
    assert taken.body == BODY
    assert enqueue(queue, first).status is EnqueueStatus.ENQUEUED
    assert [m.name for m in queue.drain()] == [second, first]
    assert queue.take() is None


def test_http_provider_acknowledges_and_leaves_delivery_to_the_outbox_queue() -> None:
    provider = HttpQueueProvider()
    assert provider.push_delivery
    assert provider.enqueue("d_x", TARGET, BODY, HEADERS, DEADLINE) == EnqueueResult(
        EnqueueStatus.ENQUEUED, message_id="d_x"
    )


@pytest.fixture
def transport() -> FakeCloudTasksTransport:
    return FakeCloudTasksTransport()


def cloudtasks(transport: FakeCloudTasksTransport, **kwargs: str) -> CloudTasksProvider:
    return CloudTasksProvider(client_with(transport), queue=QUEUE, **kwargs)


def test_create_task_request_is_exactly_upstreams(transport: FakeCloudTasksTransport) -> None:
    name = cloud_task_name("dispatch:run1:extract:1")
    result = enqueue(cloudtasks(transport), name)
    assert result == EnqueueResult(EnqueueStatus.ENQUEUED, message_id=f"{QUEUE}/tasks/{name}")
    assert transport.requests == [
        tasks_v2.CreateTaskRequest(
            parent=QUEUE,
            task=tasks_v2.Task(
                name=f"{QUEUE}/tasks/{name}",
                http_request=tasks_v2.HttpRequest(
                    url=TARGET,
                    http_method=tasks_v2.HttpMethod.POST,
                    headers={
                        "Content-Type": "application/json",
                        "X-Arco-Dispatch-Secret": "dispatch-secret",
                    },
                    body=BODY,
                ),
                dispatch_deadline=timedelta(seconds=1800),
            ),
        )
    ]
    request = transport.requests[0].task.http_request
    assert "Authorization" not in request.headers
    assert "oidc_token" not in request


def test_oidc_token_when_a_service_account_is_set(transport: FakeCloudTasksTransport) -> None:
    enqueue(cloudtasks(transport, service_account_email="sa@proj.iam.gserviceaccount.com"), "d_a")
    enqueue(
        cloudtasks(
            transport,
            service_account_email="sa@proj.iam.gserviceaccount.com",
            audience="https://aud.example",
        ),
        "d_b",
    )
    tokens = [request.task.http_request.oidc_token for request in transport.requests]
    assert tokens == [
        tasks_v2.OidcToken(
            service_account_email="sa@proj.iam.gserviceaccount.com", audience=TARGET
        ),
        tasks_v2.OidcToken(
            service_account_email="sa@proj.iam.gserviceaccount.com", audience="https://aud.example"
        ),
    ]


def test_provider_answers_map_to_enqueue_outcomes(transport: FakeCloudTasksTransport) -> None:
    """52: 409 ALREADY_EXISTS -> Deduplicated; 429 RESOURCE_EXHAUSTED -> QueueFull;
    500 -> error."""
    provider = cloudtasks(transport)
    name = cloud_task_name("dispatch:run1:extract:1")
    assert enqueue(provider, name).status is EnqueueStatus.ENQUEUED
    assert enqueue(provider, name) == EnqueueResult(
        EnqueueStatus.DEDUPLICATED, message_id=f"{QUEUE}/tasks/{name}"
    )
    transport.errors.append(google_errors.ResourceExhausted("queue quota"))  # type: ignore[no-untyped-call]
    assert enqueue(provider, "d_other").status is EnqueueStatus.QUEUE_FULL
    transport.errors.append(google_errors.InternalServerError("backend"))  # type: ignore[no-untyped-call]
    failed = enqueue(provider, "d_other")
    assert failed.status is EnqueueStatus.ERROR
    assert failed.error is not None
    assert failed.error.startswith("Cloud Tasks API error: 500")


def test_provider_is_chosen_by_setting(transport: FakeCloudTasksTransport) -> None:
    assert isinstance(make_provider(flow_settings()), HttpQueueProvider)
    assert isinstance(make_provider(flow_settings(dispatch_provider="memory")), MemoryProvider)
    settings = flow_settings(
        dispatch_provider="cloudtasks", gcp_project_id="proj", gcp_location="europe-west1"
    )
    provider = make_provider(settings, cloud_tasks_client=client_with(transport))
    assert isinstance(provider, CloudTasksProvider)
    enqueue(provider, "d_x")
    assert (
        transport.requests[0].parent
        == queue_path("proj", "europe-west1", "arco-flow-dispatch")
        == QUEUE
    )
