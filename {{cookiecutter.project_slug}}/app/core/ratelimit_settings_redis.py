"""Where rate limits are counted: in Redis, shared by every process, or in each process's memory.

`Settings` (app/core/config.py) holds these settings with the rest; app/core/ratelimit.py builds
the storage from `rate_limit_storage`.
"""

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from app.core.project import PROJECT_SLUG

# Rate limits counted in each process's memory.
MEMORY_RATE_LIMIT_STORAGE = "async+memory://"


class RateLimitStorageSettings(BaseSettings):
    """Redis by default; RATE_LIMIT_STORAGE=memory counts in each process instead."""

    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    # "redis" shares the limits between processes and instances; "memory" keeps them per process.
    RATE_LIMIT_STORAGE: Literal["redis", "memory"] = "redis"
    # Keeps the keys of services (or test runs) that share one Redis apart.
    RATE_LIMIT_KEY_PREFIX: str = Field(default=PROJECT_SLUG, min_length=1, max_length=64)

    @field_validator("REDIS_URL")
    @classmethod
    def _check_redis_url(cls, url: str) -> str:
        message = "must be a Redis URL such as redis://127.0.0.1:6379/0"
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
            raise ValueError(message)
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number in range
        except ValueError:
            raise ValueError(message) from None
        return url

    @property
    def rate_limit_storage(self) -> tuple[str, dict[str, float | str | bool]]:
        """The `limits` storage URI and its options."""
        if self.RATE_LIMIT_STORAGE == "redis":
            # Short timeouts: a Redis that does not answer must not hold requests up for long.
            options: dict[str, float | str | bool] = {"connect_timeout": 0.5, "stream_timeout": 0.5}
            return f"async+{self.REDIS_URL}", {"key_prefix": self.RATE_LIMIT_KEY_PREFIX, **options}
        return MEMORY_RATE_LIMIT_STORAGE, {}
