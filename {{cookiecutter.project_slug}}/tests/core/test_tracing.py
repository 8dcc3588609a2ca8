"""OpenTelemetry traces (app/core/tracing.py): spans of a real request, recorded by the SDK's
in-memory exporter, on a database engine of the test's own."""

import importlib.util
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, get_settings
from app.core.tracing import Tracing, batch_processor, redact_query
from app.db.engine import create_engine
from app.db.session import get_sessionmaker
from app.main import create_app
from tests.factories import auth_headers, create_user

HAS_ITEMS = importlib.util.find_spec("app.items") is not None
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
# How long a hanging exporter hangs, and the bound a request must answer within all the same.
HANG_SECONDS = 5.0
ANSWER_BOUND_SECONDS = 2.0


@dataclass
class Traced:
    app: FastAPI
    client: AsyncClient
    exporter: InMemorySpanExporter
    sessionmaker: async_sessionmaker[AsyncSession]


@pytest.fixture
async def traced(migrated_database: str) -> AsyncIterator[Traced]:
    """An app with tracing on, its spans kept in memory, on an instrumented engine whose
    connection holds the test's transaction (undone after)."""
    app = create_app(Settings(TRACING_ENABLED=True))
    tracing: Tracing = app.state.tracing
    assert tracing.provider is not None
    exporter = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = create_engine(get_settings(), url=migrated_database)
    tracing.instrument_engine(engine)
    async with engine.connect() as connection:
        transaction = await connection.begin()
        sessionmaker = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

        async def test_sessionmaker() -> async_sessionmaker[AsyncSession]:
            return sessionmaker

        app.dependency_overrides[get_sessionmaker] = test_sessionmaker
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Traced(app, client, exporter, sessionmaker)
        await transaction.rollback()
    await engine.dispose()
    await tracing.shutdown()


async def authenticated_read(traced: Traced) -> tuple[str, str, dict[str, str]]:
    """The request the tests trace, and its route template: one item's GET, or the caller's own
    account where the project has no items."""
    async with traced.sessionmaker() as session:
        user = await create_user(session)
    headers = auth_headers(user)
    if not HAS_ITEMS:
        return "/api/v1/users/me", "/api/v1/users/me", headers
    created = await traced.client.post("/api/v1/items", headers=headers, json={"title": "Milk"})
    assert created.status_code == 201
    return created.headers["location"], "/api/v1/items/{item_id}", headers


def server_span(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    (server,) = [span for span in spans if span.kind is SpanKind.SERVER]
    return server


def descends_from(
    span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]
) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    parent = span.parent
    while parent is not None:
        if parent.span_id == ancestor.context.span_id:
            return True
        found = by_id.get(parent.span_id)
        parent = found.parent if found is not None else None
    return False


async def test_a_read_gives_a_server_span_named_by_route_with_its_queries_below(
    traced: Traced,
) -> None:
    path, route, headers = await authenticated_read(traced)
    traced.exporter.clear()
    response = await traced.client.get(path, headers=headers)
    assert response.status_code == 200
    spans = traced.exporter.get_finished_spans()
    server = server_span(spans)
    assert server.name == f"GET {route}"
    assert server.attributes is not None
    assert server.attributes["http.route"] == route
    assert server.attributes["http.response.status_code"] == 200
    assert server.parent is None
    queries = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert queries, [span.name for span in spans]
    for query in queries:
        assert query.context.trace_id == server.context.trace_id
        assert descends_from(query, server, spans), query.name
    statements = [str((query.attributes or {}).get("db.statement")) for query in queries]
    assert any(statement.startswith("SELECT") for statement in statements), statements


async def test_an_incoming_traceparent_makes_the_request_part_of_that_trace(
    traced: Traced,
) -> None:
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    response = await traced.client.get("/api/v1/health/live", headers={"traceparent": traceparent})
    assert response.status_code == 200
    server = server_span(traced.exporter.get_finished_spans())
    assert format_trace_id(server.context.trace_id) == TRACE_ID
    assert server.parent is not None
    assert server.parent.is_remote
    assert format_span_id(server.parent.span_id) == PARENT_SPAN_ID


async def test_an_instrumented_client_carries_the_trace_to_the_service_it_calls(
    traced: Traced,
) -> None:
    """Outgoing HTTP: a client span, and a traceparent the called service (here the app
    itself) continues."""
    tracing: Tracing = traced.app.state.tracing
    transport = ASGITransport(app=traced.app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as outgoing:
        tracing.instrument_http_client(outgoing)
        response = await outgoing.get("/api/v1/health/live?token=s3cret")
    assert response.status_code == 200
    spans = traced.exporter.get_finished_spans()
    (client,) = [span for span in spans if span.kind is SpanKind.CLIENT and span.name == "GET"]
    server = server_span(spans)
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
    # No span keeps a query string's values.
    recorded = json.dumps([dict(span.attributes or {}) for span in spans])
    assert "s3cret" not in recorded
    assert "token=REDACTED" in recorded


def test_query_values_are_redacted_and_names_kept() -> None:
    assert redact_query("page=2&token=abc&empty=") == "page=REDACTED&token=REDACTED&empty=REDACTED"


# capsys comes first so the app's log handler is created on the captured stdout.
async def test_log_lines_of_a_request_carry_its_trace_id(
    capsys: pytest.CaptureFixture[str], traced: Traced
) -> None:
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    await traced.client.get("/api/v1/health/live", headers={"traceparent": traceparent})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    (request_line,) = [line for line in lines if line["message"] == "request"]
    server = server_span(traced.exporter.get_finished_spans())
    assert request_line["trace_id"] == TRACE_ID
    assert request_line["span_id"] == format_span_id(server.context.span_id)


class RaisingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector refused")


class HangingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        time.sleep(HANG_SECONDS)
        return SpanExportResult.SUCCESS


@pytest.mark.parametrize("exporter_class", [RaisingExporter, HangingExporter])
async def test_an_exporter_that_fails_or_hangs_never_fails_or_delays_a_request(
    traced: Traced, exporter_class: type[RaisingExporter | HangingExporter]
) -> None:
    tracing: Tracing = traced.app.state.tracing
    assert tracing.provider is not None
    exporter = exporter_class()
    processor = batch_processor(exporter)
    tracing.provider.add_span_processor(processor)
    path, _route, headers = await authenticated_read(traced)
    processor.force_flush(timeout_millis=100)  # the exporter is now failing, or stuck
    for _ in range(3):
        started = time.perf_counter()
        response = await traced.client.get(path, headers=headers)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert elapsed < ANSWER_BOUND_SECONDS, elapsed
    assert exporter.calls >= 1


async def test_tracing_is_off_by_default(
    capsys: pytest.CaptureFixture[str], client: AsyncClient, app: FastAPI
) -> None:
    """No provider, FastAPI's telemetry switched off, and no trace id in the logs."""
    assert Settings().TRACING_ENABLED is False
    tracing: Tracing = app.state.tracing
    assert tracing.provider is None
    telemetry = tracing.fastapi_options()["telemetry"]
    assert telemetry["tracing"] is False
    assert telemetry["metrics"] is False
    assert telemetry["logs"] is False
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    response = await client.get("/api/v1/health/live", headers={"traceparent": traceparent})
    assert response.status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    (request_line,) = [line for line in lines if line["message"] == "request"]
    assert "trace_id" not in request_line


def test_an_otlp_endpoint_must_be_an_http_address() -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// address"):
        Settings(OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318")
    settings = Settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/")
    assert settings.otlp_traces_endpoint == "http://collector:4318/v1/traces"
