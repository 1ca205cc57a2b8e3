"""A real OTLP/HTTP trace receiver on loopback: POST /v1/traces, the protobuf decoded
with the OpenTelemetry proto package, the spans kept as plain dicts (and the raw
request bodies, for grepping)."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


class OTLPReceiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.requests: list[dict[str, str]] = []  # the headers of each request
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._keep(request, body, dict(self.headers.items()))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _keep(
        self, request: ExportTraceServiceRequest, body: bytes, headers: dict[str, str]
    ) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex() or None,
                            "name": span.name,
                            "kind": Span.SpanKind.Name(span.kind),
                            "start_ns": span.start_time_unix_nano,
                            "end_ns": span.end_time_unix_nano,
                            "attributes": _attributes(span.attributes),
                            "events": [
                                {
                                    "name": e.name,
                                    "time_ns": e.time_unix_nano,
                                    "attributes": _attributes(e.attributes),
                                }
                                for e in span.events
                            ],
                            "status": {
                                "code": Status.StatusCode.Name(span.status.code),
                                "message": span.status.message,
                            },
                            "links": [
                                {
                                    "trace_id": link.trace_id.hex(),
                                    "span_id": link.span_id.hex(),
                                    "attributes": _attributes(link.attributes),
                                }
                                for link in span.links
                            ],
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "raw": MessageToDict(span),
                        }
                    )
        with self._lock:
            self.spans.extend(spans)
            self.bodies.append(body)
            self.requests.append(headers)

    async def trace(
        self, task_id: str, count: int | None = None, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The spans of the task's trace (by gen_ai.conversation.id), once its root has
        arrived (and ``count`` spans, when given). Async: the test server runs on the
        test's own event loop, which must go on meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [
                    s
                    for s in self.spans
                    if s["attributes"].get("gen_ai.conversation.id") == task_id
                ]
            roots = [s for s in found if s["parent_span_id"] is None]
            if roots and (count is None or len(found) >= count):
                trace_id = roots[0]["trace_id"]
                return [s for s in found if s["trace_id"] == trace_id]
            if time.monotonic() > deadline:
                raise AssertionError(f"no spans of task {task_id} arrived: {len(found)} so far")
            await asyncio.sleep(0.05)

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.bodies.clear()
            self.requests.clear()
