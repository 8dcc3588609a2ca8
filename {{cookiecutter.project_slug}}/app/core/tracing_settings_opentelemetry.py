"""Settings for OpenTelemetry traces, off by default.

`Settings` (app/core/config.py) holds these with the rest; app/core/tracing.py reads them. The
OTLP exporter takes its other standard variables (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
_COMPRESSION, _CERTIFICATE) and the batch processor its OTEL_BSP_* straight from the
environment, as every OpenTelemetry SDK does.
"""

from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

# Where OTLP over HTTP takes traces below a collector's base address (the specification's path).
OTLP_TRACES_PATH = "/v1/traces"


class TracingSettings(BaseSettings):
    # Off: no tracer provider, no span is made, FastAPI's own telemetry stays switched off.
    TRACING_ENABLED: bool = False
    # The share of new traces recorded; a request that arrives with a W3C traceparent follows
    # its caller's decision instead (parent-based sampling).
    TRACES_SAMPLER_RATIO: float = Field(default=1.0, ge=0.0, le=1.0)
    # A collector's base address (http://collector:4318); the exporter sends to .../v1/traces.
    # Unset: spans are made (for the logs' trace ids and for any processor added in code) but
    # sent nowhere.
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None
    # The full address for traces alone, used as given; it wins over the base address.
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: str | None = None
    # On shutdown, how long the spans still queued may take to reach the collector.
    TRACING_SHUTDOWN_SECONDS: float = Field(default=1.0, gt=0, le=30)

    @field_validator("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    @classmethod
    def _check_endpoint(cls, url: str | None) -> str | None:
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            msg = "must be an http:// or https:// address such as http://collector:4318"
            raise ValueError(msg)
        return url

    @property
    def otlp_traces_endpoint(self) -> str | None:
        """Where the OTLP exporter sends traces, or None for nowhere."""
        if self.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
            return self.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        if self.OTEL_EXPORTER_OTLP_ENDPOINT:
            return self.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/") + OTLP_TRACES_PATH
        return None
