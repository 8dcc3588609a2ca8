"""Settings for request tracing: none, as this project traces nothing.

`Settings` (app/core/config.py) takes these with the rest; the OpenTelemetry variant of this
project adds TRACING_ENABLED and the OTLP export settings here.
"""

from pydantic_settings import BaseSettings


class TracingSettings(BaseSettings):
    pass
