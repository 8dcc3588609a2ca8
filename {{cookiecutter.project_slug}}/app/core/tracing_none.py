"""Request tracing: none in this project.

The same names as the OpenTelemetry variant of this module, doing nothing, so that
app/main.py and app/core/logging.py are one for both: no span is made, no id is logged, and
FastAPI gets no telemetry settings.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings


def current_trace_ids() -> tuple[str, str] | None:
    """The current trace and span ids, for the log lines: there are none."""
    return None


class Tracing:
    def __init__(self, settings: Settings) -> None:
        del settings

    def fastapi_options(self) -> dict[str, Any]:
        return {}

    def instrument_engine(self, engine: AsyncEngine) -> None:
        del engine

    async def shutdown(self) -> None:
        return None
