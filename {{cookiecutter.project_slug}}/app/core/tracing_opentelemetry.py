"""OpenTelemetry traces: one server span per request, its database queries and outgoing HTTP
calls as spans below it, exported over OTLP, and the trace ids on every log line.

The server spans are FastAPI's own (`FastAPI(telemetry=...)`, FastAPI 0.142 and later): they
take a W3C `traceparent` from the request, are named with the route template
(`GET /api/v1/items/{item_id}`) and wrap the whole middleware stack, so every log line of the
request, the request line included, falls inside them. FastAPI's metrics and log events stay
off: this module traces and nothing else.

Off by default (TRACING_ENABLED=false): no provider exists, FastAPI's telemetry is switched
off, and a request costs what it costs without this module. On, spans leave the request path
through a batch processor whose bounded queue drops spans when it is full: a collector that is
slow, down or answering errors never delays or fails a request.
"""

import logging
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import format_span_id, format_trace_id
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.project import PROJECT_SLUG

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

# Attributes that hold a query string, whole or inside an address.
_QUERY_ATTRIBUTES = ("url.query",)
_URL_ATTRIBUTES = ("url.full", "http.url")
REDACTED = "REDACTED"


def current_trace_ids() -> tuple[str, str] | None:
    """The current trace and span ids as 32 and 16 hex digits, or None outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def redact_query(query: str) -> str:
    """The parameter names of a query string, each value replaced: a value may be a secret."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, REDACTED) for name, _value in pairs])


class RedactQueryValues(SpanProcessor):
    """Replaces the values in a span's query string before any exporter sees the span.

    FastAPI records a request's query string (`url.query`) and the httpx instrumentation a call's
    whole address (`url.full`); the request log line records the path alone for the same reason.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = span.attributes or {}
        for name in _QUERY_ATTRIBUTES:
            value = attributes.get(name)
            if isinstance(value, str) and value:
                span.set_attribute(name, redact_query(value))
        for name in _URL_ATTRIBUTES:
            value = attributes.get(name)
            if isinstance(value, str) and "?" in value:
                parts = urlsplit(value)
                span.set_attribute(
                    name, urlunsplit(parts._replace(query=redact_query(parts.query)))
                )


def service_resource() -> Resource:
    """Who sends the spans: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES when set, else the
    project's slug as the service name."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: PROJECT_SLUG}))
    return detected


def batch_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    """The processor between the request path and an exporter.

    Ending a span only appends it to a bounded queue (2048 spans, OTEL_BSP_MAX_QUEUE_SIZE); a
    thread of its own exports in batches. When the exporter cannot keep up, new spans are dropped
    and the SDK logs that; an exporter that raises is logged and the next batch tried.
    """
    return BatchSpanProcessor(exporter)


def build_provider(settings: Settings) -> TracerProvider:
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.TRACES_SAMPLER_RATIO)),
        resource=service_resource(),
        # Shut down by the app's lifespan, within TRACING_SHUTDOWN_SECONDS; at interpreter exit
        # the SDK would wait for a hanging collector without a bound.
        shutdown_on_exit=False,
    )
    provider.add_span_processor(RedactQueryValues())
    endpoint = settings.otlp_traces_endpoint
    if endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(batch_processor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class Tracing:
    """One app's traces: its provider (None when tracing is off) and what it instruments."""

    def __init__(self, settings: Settings) -> None:
        self.provider = build_provider(settings) if settings.TRACING_ENABLED else None
        self._shutdown_seconds = settings.TRACING_SHUTDOWN_SECONDS

    def fastapi_options(self) -> dict[str, Any]:
        """The `telemetry` argument of `FastAPI()`: server spans from this provider, or none."""
        telemetry: TelemetryConfig = {
            "tracer_provider": self.provider,
            "tracing": self.provider is not None,
            "metrics": False,
            "logs": False,
            # One span per dependency, endpoint and serialization: where a request's time went.
            "operation_spans": True,
            # Exporters are this module's to add, from the settings.
            "auto_configure": False,
        }
        return {"telemetry": telemetry}

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """A span per SQL statement run on `engine` (its text with placeholders, never the
        values bound to them), below the span current at the time."""
        if self.provider is None:
            return
        tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", None, self.provider)
        # The instrumentation also counts pool connections: into no meter, since the project's
        # metrics are not OpenTelemetry's.
        unused = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("unused")
        EngineTracer(tracer, engine.sync_engine, unused)  # type: ignore[no-untyped-call]

    def instrument_http_client(self, client: "httpx.AsyncClient | httpx.Client") -> None:
        """A client span per request that `client` sends, with a `traceparent` header that
        carries the current trace to the service called."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    async def shutdown(self) -> None:
        """Send the spans still queued, waiting at most TRACING_SHUTDOWN_SECONDS for them."""
        provider = self.provider
        if provider is None:
            return
        # A daemon thread: one stuck on a collector that never answers cannot hold up the exit.
        stopping = threading.Thread(target=provider.shutdown, name="tracing-shutdown", daemon=True)
        stopping.start()
        await anyio.to_thread.run_sync(stopping.join, self._shutdown_seconds)
        if stopping.is_alive():
            logger.warning(
                "shutdown: spans not exported within %s s were dropped", self._shutdown_seconds
            )
