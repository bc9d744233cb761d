"""A small OTLP/HTTP trace receiver for the end-to-end tests: what a collector
would get from `saga run` and `saga participant`, decoded and kept in memory.

It answers ``POST /v1/traces`` (protobuf, as ``http/protobuf`` exporters send
it, gzip- or deflate-compressed when ``OTEL_EXPORTER_OTLP_COMPRESSION`` says so)
on a free port of 127.0.0.1, in a thread of its own: the exporters post from
their own threads, and the test's event loop stays free to poll.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

__all__ = ["Link", "OtlpReceiver", "Span", "by_id", "decode", "walk"]

_KINDS = {
    ProtoSpan.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    ProtoSpan.SPAN_KIND_INTERNAL: "INTERNAL",
    ProtoSpan.SPAN_KIND_SERVER: "SERVER",
    ProtoSpan.SPAN_KIND_CLIENT: "CLIENT",
    ProtoSpan.SPAN_KIND_PRODUCER: "PRODUCER",
    ProtoSpan.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUSES = {
    ProtoStatus.STATUS_CODE_UNSET: "UNSET",
    ProtoStatus.STATUS_CODE_OK: "OK",
    ProtoStatus.STATUS_CODE_ERROR: "ERROR",
}


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Span:
    """One exported span; ids in lowercase hex, ``parent_id`` empty for a root."""

    service: str
    resource: Mapping[str, Any]
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    name: str
    attributes: Mapping[str, Any]
    links: tuple[Link, ...]
    status: str
    status_message: str
    start_ns: int
    end_ns: int
    events: tuple[str, ...] = field(default=())

    @property
    def instance(self) -> str:
        """``service.instance.id`` of the process that made it (from OTEL_RESOURCE_ATTRIBUTES)."""
        return str(self.resource.get("service.instance.id", ""))

    def __str__(self) -> str:
        parent = self.parent_id or "-"
        return f"{self.name} [{self.kind} {self.service} {self.span_id}<-{parent}]"


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def decode(body: bytes) -> list[Span]:
    """The spans of one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        service=service,
                        resource=resource,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        name=span.name,
                        attributes=_attributes(span.attributes),
                        links=tuple(
                            Link(
                                link.trace_id.hex(),
                                link.span_id.hex(),
                                _attributes(link.attributes),
                            )
                            for link in span.links
                        ),
                        status=_STATUSES.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        events=tuple(event.name for event in span.events),
                    )
                )
    return spans


def _inflate(body: bytes, encoding: str) -> bytes:
    match encoding.strip().lower():
        case "" | "identity":
            return body
        case "gzip":
            return gzip.decompress(body)
        case "deflate":
            return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/traces":
            self.send_error(404, "only /v1/traces is served here")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        try:
            spans = decode(_inflate(body, encoding))
        except Exception as exc:  # a bad request is the exporter's bug: tell the test
            self.server.errors.append(f"{type(exc).__name__}: {exc}")
            self.send_error(400, "cannot decode the request")
            return
        self.server.keep(spans, encoding or "identity")
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per export would bury the test's own output


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Span] = []
        self.errors: list[str] = []
        self.encodings: Counter[str] = Counter()
        self._lock = threading.Lock()

    def keep(self, spans: list[Span], encoding: str) -> None:
        with self._lock:
            self.spans.extend(spans)
            self.encodings[encoding] += 1

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` serves on ``receiver.endpoint`` until the end.

    ``spans()`` is everything received so far, in the order it came.
    """

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters add ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def errors(self) -> list[str]:
        """Requests that could not be decoded."""
        return list(self._server.errors)

    @property
    def encodings(self) -> Counter[str]:
        """Requests received per ``Content-Encoding`` (``identity`` for none)."""
        return Counter(self._server.encodings)

    def spans(self) -> list[Span]:
        return self._server.snapshot()

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def by_id(spans: Iterable[Span]) -> dict[str, Span]:
    return {span.span_id: span for span in spans}


def walk(spans: Iterable[Span]) -> Iterator[tuple[int, Span]]:
    """``(depth, span)`` depth first from the roots, siblings by start time.

    A root is a span whose parent is not among ``spans``.
    """
    spans = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)

    def below(parent: str, depth: int) -> Iterator[tuple[int, Span]]:
        for span in children.get(parent, []):
            yield depth, span
            yield from below(span.span_id, depth + 1)

    yield from below("", 0)
