"""The ``cloudtasks`` provider: one HTTP task per dispatch through the official
google-cloud-tasks client (arco-orchestration 3.2, arco-contract 3.1)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from google.api_core import exceptions as google_errors
from google.cloud import tasks_v2

from arco_dispatch.provider import EnqueueResult, EnqueueStatus

# Upstream's HTTP client timeout for Cloud Tasks API calls.
API_TIMEOUT_SECS = 30.0


def queue_path(project_id: str, location: str, queue: str) -> str:
    """``projects/{project}/locations/{location}/queues/{queue}``."""
    return tasks_v2.CloudTasksClient.queue_path(project_id, location, queue)


class CloudTasksProvider:
    """Cloud Tasks creates one HTTP task per dispatch and delivers it."""

    kind = "cloudtasks"
    push_delivery = False

    def __init__(
        self,
        client: tasks_v2.CloudTasksClient,
        *,
        queue: str,
        service_account_email: str | None = None,
        audience: str | None = None,
    ) -> None:
        """``queue`` is the full queue path. With a service account, each task carries an
        OIDC token for ``audience`` (the target URL when not given)."""
        self._client = client
        self._queue = queue
        self._service_account_email = service_account_email or None
        self._audience = audience or None

    def _task(
        self,
        name: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: timedelta,
    ) -> tasks_v2.Task:
        """The Cloud Tasks task of one dispatch."""
        request = tasks_v2.HttpRequest(
            url=target,
            http_method=tasks_v2.HttpMethod.POST,
            headers=dict(headers),
            body=body,
        )
        if self._service_account_email:
            request.oidc_token = tasks_v2.OidcToken(
                service_account_email=self._service_account_email,
                audience=self._audience or target,
            )
        return tasks_v2.Task(
            name=f"{self._queue}/tasks/{name}",
            http_request=request,
            dispatch_deadline=timedelta(seconds=int(deadline.total_seconds())),
        )

    def enqueue(
        self,
        name: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: timedelta,
    ) -> EnqueueResult:
        """CreateTask; ALREADY_EXISTS means deduplicated, RESOURCE_EXHAUSTED queue full."""
        task = self._task(name, target, body, headers, deadline)
        try:
            created = self._client.create_task(
                request=tasks_v2.CreateTaskRequest(parent=self._queue, task=task),
                timeout=API_TIMEOUT_SECS,
            )
        except google_errors.AlreadyExists:
            return EnqueueResult(EnqueueStatus.DEDUPLICATED, message_id=task.name)
        except google_errors.ResourceExhausted:
            return EnqueueResult(EnqueueStatus.QUEUE_FULL)
        except google_errors.GoogleAPIError as exc:
            return EnqueueResult(EnqueueStatus.ERROR, error=f"Cloud Tasks API error: {exc}")
        return EnqueueResult(EnqueueStatus.ENQUEUED, message_id=created.name)

    def close(self) -> None:
        """Close the client's channel."""
        # The generated transport's close() carries no annotations.
        self._client.transport.close()  # type: ignore[no-untyped-call]
