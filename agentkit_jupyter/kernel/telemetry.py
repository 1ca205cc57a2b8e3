"""``TaskHandle.export_otel()``: a finished run's spans, sent to an OpenTelemetry collector
(GenAI semantic conventions; see docs/telemetry.md).

The server exports by default (``POST tasks/{id}/otel``, to the collector it is
configured with: one place for the endpoint and its credentials). With an ``endpoint``,
or for a run no server sees, this kernel builds the spans from the run's log
(``tasks.spans``, the same code) and sends them itself (the ``[otel]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..protocol import OtelExportAnswer
from ..tasks.telemetry import OtelExporter, export_requested
from .client import AgentKitClient
from .forking import all_messages

if TYPE_CHECKING:
    from .client import TaskClient
    from .widget import TaskWidget

__all__ = ["Telemetry"]


class Telemetry:
    """What :class:`~agentkit_jupyter.kernel.handle.TaskHandle` adds for OpenTelemetry."""

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def widget(self) -> TaskWidget: ...

        @property
        def task_id(self) -> str: ...

        @property
        def done(self) -> bool: ...

        @property
        def _client(self) -> TaskClient: ...

    def export_otel(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        capture_content: bool | None = None,
        timeout: float = 10.0,
    ) -> OtelExportAnswer:
        """Send this finished run's spans (``invoke_agent``, ``chat``, ``execute_tool``)
        to an OpenTelemetry collector; returns ``task_ids``, ``spans``, ``delivered``.

        Without ``endpoint`` the server sends them, to the collector it exports to (it
        exports every run when it ends: this is for runs from before, or again). With
        ``endpoint`` (an OTLP/HTTP base URL, ``/v1/traces`` appended, or a traces URL),
        or for a run only this kernel has, this kernel sends them, with ``headers``
        and ``capture_content`` (default: the standard ``OTEL_*`` variables).
        """
        if not self.done:
            raise RuntimeError(
                f"Task {self.task_id} is still running; export its spans once it has ended "
                "(wait() first)."
            )
        client = self._client
        if endpoint is None and isinstance(client, AgentKitClient):
            return client.export_otel(self.task_id)
        if not export_requested(endpoint):
            raise ValueError(
                "No collector to send the spans to: pass endpoint='http://host:4318' or set "
                "OTEL_EXPORTER_OTLP_ENDPOINT."
            )
        messages = all_messages(self.widget)
        record = client.get_task(self.task_id, limit=0)
        record.pop("events", None)
        local = getattr(self.widget, "local_run", None)
        gateway = getattr(getattr(local, "agent", None), "gateway", None)
        provider = getattr(gateway, "provider_name", None)
        token = client.server.token if isinstance(client, AgentKitClient) else None
        exporter = OtelExporter(
            endpoint,
            headers,
            capture_content=capture_content,
            redact=_without(token) if token else None,
        )
        try:
            outcome = exporter.export_now(
                record, messages, provider if isinstance(provider, str) else None, timeout
            )
        finally:
            exporter.shutdown()
        return {
            "task_ids": [self.task_id],
            "spans": outcome.spans,
            "delivered": outcome.delivered,
            "skipped": [],
        }


def _without(secret: str) -> Any:
    def redact(text: str) -> str:
        return text.replace(secret, "[secret]") if secret in text else text

    return redact
