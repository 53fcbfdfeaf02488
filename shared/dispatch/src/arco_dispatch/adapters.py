"""Choosing the provider adapter and wiring the sender from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from arco_dispatch.http_provider import HttpQueueProvider
from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.message import EnvelopeFactory, dispatch_headers
from arco_dispatch.provider import Provider
from arco_dispatch.sending import Sender
from arco_dispatch.settings import FlowSettings, ProviderName
from arco_orchestration.db import Database

if TYPE_CHECKING:
    from google.cloud import tasks_v2


def make_provider(
    settings: FlowSettings, *, cloud_tasks_client: tasks_v2.CloudTasksClient | None = None
) -> Provider:
    """The adapter named by ``ARCO_FLOW_DISPATCH_PROVIDER``. The Cloud Tasks client uses
    Google's default credentials unless one is given."""
    if settings.provider is ProviderName.CLOUDTASKS:
        # Imported here: the Cloud Tasks client (gRPC, protobuf) takes seconds to import,
        # which the http provider's processes need not pay at every start.
        from google.cloud import tasks_v2  # noqa: PLC0415

        from arco_dispatch.cloudtasks_provider import CloudTasksProvider, queue_path  # noqa: PLC0415

        return CloudTasksProvider(
            cloud_tasks_client or tasks_v2.CloudTasksClient(),
            queue=queue_path(settings.gcp_project_id, settings.gcp_location, settings.queue),
            service_account_email=settings.service_account_email or None,
            audience=settings.target_audience,
        )
    if settings.provider is ProviderName.MEMORY:
        return MemoryProvider()
    return HttpQueueProvider()


def make_envelopes(settings: FlowSettings) -> EnvelopeFactory:
    """The envelope builder of this scope, callback base URL and task-token settings."""
    return EnvelopeFactory(
        tenant_id=settings.tenant_id,
        workspace_id=settings.workspace_id,
        callback_base_url=settings.callback_base_url,
        token_config=settings.task_token_config(),
    )


def make_sender(settings: FlowSettings, db: Database, provider: Provider) -> Sender:
    """The sender of this service: target, secret headers and deadline from ``settings``."""
    return Sender(
        db=db,
        scope=settings.scope,
        provider=provider,
        envelopes=make_envelopes(settings),
        target=settings.dispatch_target_url,
        headers=dispatch_headers(settings.dispatch_secret),
        deadline=settings.task_timeout,
    )
