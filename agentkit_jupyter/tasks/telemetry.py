"""OpenTelemetry export of finished runs: the spans of ``tasks/spans.py`` sent over
OTLP/HTTP with the OpenTelemetry SDK (the ``[otel]`` extra; imported only when export
is on).

Off by default. On when an endpoint is configured: the ``otel_endpoint`` traitlet, or
the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
(with ``OTEL_EXPORTER_OTLP_HEADERS`` and the other ``OTEL_*`` variables, which the
SDK's exporter reads itself). ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
keeps it off.

A run is exported when it ends, from its recorded log (``LiveExport``, hooked on the
hub): nothing happens while it runs, and the event loop only reads the log's bytes
(memory, or the history on a worker thread). Building the spans and handing them to
the SDK happens on one worker thread; the SDK's ``BatchSpanProcessor`` sends them
from its own thread. A dead or slow collector so costs a warning in the log (once per
failure streak), never a stalled or failed run: the processor's queue is bounded and
drops what does not fit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import agentkit_jupyter.protocol as protocol

from .hub import HISTORY_PAGE_EVENTS, Task, TaskHub
from .listing import ListFilter
from .spans import SpanSpec, TraceSpec, build_trace
from .store import TaskStore

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = [
    "LiveExport",
    "OtelExporter",
    "OtelUnavailableError",
    "capture_content_from_env",
    "export_history",
    "export_requested",
    "otel_secrets",
    "read_log",
    "traces_endpoint",
]

log = logging.getLogger("agentkit_jupyter.telemetry")

# Runs whose spans wait for the worker thread; beyond, a finished run is not exported
# (said in the log) rather than memory growing behind a stuck thread.
MAX_PENDING_RUNS = 1000
INSTALL_HINT = "pip install 'agentkit-jupyter[otel]'"
_TRUE = {"1", "true", "yes", "on", "span_only", "span_and_event"}


class OtelUnavailableError(RuntimeError):
    """The OpenTelemetry SDK or its OTLP/HTTP exporter is not installed."""


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def export_requested(endpoint: str | None = None) -> bool:
    """Whether OTLP export is asked for: an endpoint given, or the standard variables."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return False
    if _env("OTEL_TRACES_EXPORTER").lower() == "none":
        return False
    return bool(
        endpoint or _env(protocol.ENV_OTLP_TRACES_ENDPOINT) or _env(protocol.ENV_OTLP_ENDPOINT)
    )


def capture_content_from_env() -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says content may go out."""
    return _env(protocol.ENV_OTEL_CAPTURE_CONTENT).lower() in _TRUE


def otel_secrets(headers: Mapping[str, str] | None = None) -> list[str]:
    """The OTLP headers' values (configured, or the standard variables'): credentials,
    kept out of every event and span like the server's token. An ``Authorization``
    value's credentials count alone too (``Basic <this>``)."""
    from urllib.parse import unquote

    values = [v for v in (headers or {}).values() if isinstance(v, str)]
    for name in (protocol.ENV_OTLP_HEADERS, protocol.ENV_OTLP_TRACES_HEADERS):
        for pair in _env(name).split(","):
            _, sep, value = pair.partition("=")
            if sep:
                values.append(unquote(value.strip()))
    found: list[str] = []
    for value in values:
        scheme, space, credentials = value.strip().partition(" ")
        for candidate in (value.strip(), credentials.strip() if space else ""):
            if len(candidate) >= 8 and candidate not in found:
                found.append(candidate)
    return found


def traces_endpoint(endpoint: str) -> str:
    """The traces URL of a base endpoint, as the SDK does for ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (``/v1/traces`` appended), unless it already is one."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """What one synchronous export (a back-fill) did."""

    spans: int
    # The collector took every batch sent meanwhile, within the timeout.
    delivered: bool


class _ChosenIds(Protocol):
    trace_id: int | None
    span_id: int | None


def _chosen_ids() -> Any:
    """The SDK's id generator, told the ids of the next span (see spans.trace_id_of):
    the same run exported twice gets the same ids, a fork links to its parent."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ChosenIds(RandomIdGenerator):
        def __init__(self) -> None:
            self.trace_id: int | None = None
            self.span_id: int | None = None

        def generate_span_id(self) -> int:
            chosen, self.span_id = self.span_id, None
            return chosen if chosen is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            chosen, self.trace_id = self.trace_id, None
            return chosen if chosen is not None else super().generate_trace_id()

        def is_trace_id_random(self) -> bool:
            return False  # derived from the task id

    return ChosenIds()


def _reporting(exporter: SpanExporter, endpoint: str) -> SpanExporter:
    """``exporter`` that logs one warning when batches start failing (and one line when
    they go through again), and counts the outcomes."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Reporting(SpanExporter):
        def __init__(self) -> None:
            self.failures = 0
            self.successes = 0
            self.failing = False

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            try:
                result = exporter.export(spans)
            except Exception as exc:  # an exporter bug must not end the SDK's thread
                log.debug("agentkit: OTLP exporter raised", exc_info=exc)
                result = SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                self.successes += 1
                if self.failing:
                    self.failing = False
                    log.info("agentkit: OpenTelemetry export to %s works again", endpoint)
            else:
                self.failures += 1
                if not self.failing:
                    self.failing = True
                    log.warning(
                        "agentkit: OpenTelemetry export to %s failed: %d span(s) dropped; "
                        "runs are not affected (said once until it works again)",
                        endpoint,
                        len(spans),
                    )
            return result

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Reporting()


def _without_secrets(endpoint: str) -> str:
    """The endpoint as logged: no user info, no query (a key may be in either)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(endpoint)
    except ValueError:
        return "the configured endpoint"
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OtelExporter:
    """Spans of finished runs, to one OTLP/HTTP collector.

    ``endpoint`` None: the SDK's own environment (``OTEL_EXPORTER_OTLP_*``); else a base
    URL (``/v1/traces`` appended, as the SDK does for ``OTEL_EXPORTER_OTLP_ENDPOINT``) or
    a traces URL. ``headers`` None: ``OTEL_EXPORTER_OTLP_HEADERS``. ``capture_content``
    None: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``. ``redact`` is applied to
    every text that goes into a span (the hub's known secrets)."""

    def __init__(
        self,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        capture_content: bool | None = None,
        timeout: float | None = None,
        redact: Callable[[str], str] | None = None,
        batched: bool = True,
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        except ImportError as exc:
            raise OtelUnavailableError(
                f"OpenTelemetry export needs the SDK and its OTLP/HTTP exporter: {INSTALL_HINT}"
            ) from exc
        self.capture_content = (
            capture_content_from_env() if capture_content is None else capture_content
        )
        self._redact = redact
        url = traces_endpoint(endpoint) if endpoint else None
        otlp = OTLPSpanExporter(
            endpoint=url, headers=dict(headers) if headers else None, timeout=timeout
        )
        self.endpoint = _without_secrets(url or str(getattr(otlp, "_endpoint", "")))
        self._exporter = _reporting(otlp, self.endpoint)
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over this default.
        attributes = {} if _env("OTEL_SERVICE_NAME") else {"service.name": "agentkit-jupyter"}
        self._ids: _ChosenIds = _chosen_ids()
        self._provider = TracerProvider(
            resource=Resource.create(attributes),
            id_generator=self._ids,
        )
        processor = (
            BatchSpanProcessor(self._exporter) if batched else SimpleSpanProcessor(self._exporter)
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("agentkit_jupyter")
        # The chosen ids and the span they are for: one span at a time.
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentkit-otel")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._closed = False

    @property
    def failures(self) -> int:
        return int(getattr(self._exporter, "failures", 0))

    # -- from a task's log to the SDK ------------------------------------------------------

    def build(
        self, record: dict[str, Any], messages: list[dict[str, Any]], provider: str | None
    ) -> TraceSpec:
        trace = build_trace(
            record, messages, capture_content=self.capture_content, provider=provider
        )
        if self._redact is not None:
            for span in trace.spans:
                _redact_span(span, self._redact)
        return trace

    def emit(self, trace: TraceSpec) -> int:
        """Hand the trace's spans to the SDK (its processor sends them); returns how many."""
        from opentelemetry import trace as api
        from opentelemetry.context import Context
        from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

        kinds = {"client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
        made: dict[int, Any] = {}
        for spec in trace.spans:
            parent = made.get(spec.parent_span_id) if spec.parent_span_id is not None else None
            context = api.set_span_in_context(parent) if parent is not None else Context()
            links = [
                Link(
                    SpanContext(
                        trace_id,
                        span_id,
                        is_remote=True,
                        trace_flags=TraceFlags(TraceFlags.SAMPLED),
                    ),
                    attributes,
                )
                for trace_id, span_id, attributes in spec.links
            ]
            with self._lock:
                if parent is None:
                    self._ids.trace_id = trace.trace_id
                self._ids.span_id = spec.span_id
                span = self._tracer.start_span(
                    spec.name,
                    context=context,
                    kind=kinds.get(spec.kind, SpanKind.INTERNAL),
                    attributes=spec.attributes,
                    links=links,
                    start_time=spec.start_ns,
                )
                self._ids.trace_id = self._ids.span_id = None
            for event in spec.events:
                span.add_event(event.name, event.attributes, timestamp=event.time_ns)
            if spec.error is not None:
                span.set_status(Status(StatusCode.ERROR, spec.error))
            made[spec.span_id] = span
        # Children end before their parent, as a live run's would.
        for spec in reversed(trace.spans):
            made[spec.span_id].end(end_time=max(spec.end_ns, spec.start_ns))
        return len(trace.spans)

    def _build_and_emit(
        self, record: dict[str, Any], raw: list[bytes], provider: str | None
    ) -> int:
        try:
            return self.emit(self.build(record, parse_for_spans(raw), provider))
        except Exception:
            log.exception("agentkit: the spans of task %s could not be made", record.get("task_id"))
            return 0
        finally:
            with self._pending_lock:
                self._pending -= 1

    def submit(
        self, record: dict[str, Any], raw: list[bytes], provider: str | None = None
    ) -> Future[int] | None:
        """Export a finished run in the background (the live path): returns at once."""
        with self._pending_lock:
            if self._closed:
                return None
            if self._pending >= MAX_PENDING_RUNS:
                log.warning(
                    "agentkit: OpenTelemetry export is behind (%d runs wait); task %s not exported",
                    self._pending,
                    record.get("task_id"),
                )
                return None
            self._pending += 1
        return self._worker.submit(self._build_and_emit, record, raw, provider)

    def export_now(
        self,
        record: dict[str, Any],
        messages: list[dict[str, Any]],
        provider: str | None = None,
        timeout: float = 10.0,
    ) -> ExportOutcome:
        """Export one run and wait (at most ``timeout``) for the collector to take it:
        the back-fill path (REST, CLI, ``task.export_otel()``). Blocks: call it on a
        worker thread from async code."""
        failures = self.failures
        spans = self.emit(self.build(record, messages, provider))
        flushed = self._provider.force_flush(int(timeout * 1000))
        return ExportOutcome(spans, bool(flushed) and self.failures == failures)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for queued runs to be made into spans and sent (tests, the CLI)."""
        self._worker.submit(lambda: None).result(timeout)
        return bool(self._provider.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        """Send what is queued (the SDK waits up to its timeout), then stop."""
        with self._pending_lock:
            self._closed = True
        self._worker.shutdown(wait=True)
        self._provider.shutdown()


# Streamed pieces (a token, a tool's output or progress) carry no span data but most of
# a long run's messages: only the first of each run of them is parsed (its time may
# start a model call that never finished).
_STREAMED = (
    b'"event_type":"token"',
    b'"event_type":"tool_output"',
    b'"event_type":"tool_progress"',
)
_HEAD_BYTES = 160  # where a step message's event_type is (after type, seq, task_id)


def parse_for_spans(raw: Sequence[bytes]) -> list[dict[str, Any]]:
    """The log's messages that the spans need, parsed (off the event loop)."""
    messages: list[dict[str, Any]] = []
    streaming = False
    for data in raw:
        head = data[:_HEAD_BYTES]
        if any(marker in head for marker in _STREAMED):
            if streaming:
                continue
            streaming = True
        else:
            streaming = False
        messages.append(json.loads(data))
    return messages


def _redact_span(span: SpanSpec, redact: Callable[[str], str]) -> None:
    def clean(attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            if isinstance(value, str):
                attributes[key] = redact(value)
            elif isinstance(value, list):
                attributes[key] = [redact(v) if isinstance(v, str) else v for v in value]

    clean(span.attributes)
    for event in span.events:
        clean(event.attributes)
    if span.error:
        span.error = redact(span.error)


async def read_log(task: Task) -> list[bytes]:
    """The task's log as stored, oldest first (memory, or the history read on a worker
    thread): the bytes only, parsed later off the event loop."""
    pages: list[bytes] = []
    after = task.first_seq - 1
    while after < task.log.last_seq:
        entries = await task.read_page(after, HISTORY_PAGE_EVENTS, protocol.GET_PAGE_MAX_BYTES)
        if not entries or entries[-1].seq <= after:
            break
        pages.extend(entry.data for entry in entries)
        after = entries[-1].seq
    return pages


def provider_of(hub: TaskHub, task: Task) -> str | None:
    """``gen_ai.provider.name`` of a server agent's run (its gateway says), else None:
    a kernel's agent is not known here."""
    if task.origin != "server" or task.agent not in hub.agents:
        return None
    gateway = getattr(hub.agents.get(task.agent), "gateway", None)
    name = getattr(gateway, "provider_name", None)
    return name if isinstance(name, str) and name else None


class LiveExport:
    """Exports every run of ``hub`` when it ends (server and kernel runs alike: a
    kernel's run ends in the hub too)."""

    def __init__(self, hub: TaskHub, exporter: OtelExporter) -> None:
        self.hub = hub
        self.exporter = exporter
        self._reading: set[asyncio.Task[None]] = set()
        hub.finish_listeners.append(self._finished)

    def _finished(self, task: Task) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        reading = loop.create_task(self._send(task), name=f"agentkit-otel-{task.task_id}")
        self._reading.add(reading)
        reading.add_done_callback(self._reading.discard)

    async def _send(self, task: Task) -> None:
        try:
            raw = await read_log(task)
        except Exception:
            log.exception("agentkit: the log of task %s could not be read for export", task.task_id)
            return
        self.exporter.submit(task.to_dict(), raw, provider_of(self.hub, task))

    async def drain(self) -> None:
        """Wait until every ended run was handed to the exporter (tests, shutdown)."""
        while self._reading:
            await asyncio.gather(*list(self._reading), return_exceptions=True)

    def close(self) -> None:
        if self._finished in self.hub.finish_listeners:
            self.hub.finish_listeners.remove(self._finished)


async def export_task_now(
    hub: TaskHub, task: Task, exporter: OtelExporter, timeout: float = 10.0
) -> ExportOutcome:
    """Back-fill one task from its log (memory or the history), waiting for the collector."""
    raw = await read_log(task)
    record = task.to_dict()
    provider = provider_of(hub, task)

    def work() -> ExportOutcome:
        return exporter.export_now(record, parse_for_spans(raw), provider, timeout)

    return await asyncio.to_thread(work)


@dataclass(slots=True)
class HistoryExport:
    """What ``export_history`` did."""

    task_ids: list[str]
    spans: int
    delivered: bool
    # Named tasks the history does not have as finished.
    skipped: list[str]


def export_history(
    store: TaskStore,
    exporter: OtelExporter,
    *,
    task_ids: Sequence[str] | None = None,
    chosen: ListFilter | None = None,
    timeout: float = 10.0,
) -> HistoryExport:
    """Back-fill finished tasks from a task history (the SQLite file): those named, or
    those ``chosen`` keeps (all finished ones without either). Blocking: the CLI's."""
    records = {
        stored.record["task_id"]: stored.record
        for stored in store.load().tasks
        if protocol.is_final(stored.record.get("status"))
    }
    if task_ids is not None:
        wanted = [records[t] for t in task_ids if t in records]
        skipped = [t for t in task_ids if t not in records]
    else:
        wanted = (chosen or ListFilter()).apply(list(records.values()))
        skipped = []
    done = HistoryExport([], 0, True, skipped)
    for record in wanted:
        messages = parse_for_spans([text.encode() for _, text in store.events(record["task_id"])])
        outcome = exporter.export_now(record, messages, None, timeout)
        done.task_ids.append(record["task_id"])
        done.spans += outcome.spans
        done.delivered = done.delivered and outcome.delivered
    return done
