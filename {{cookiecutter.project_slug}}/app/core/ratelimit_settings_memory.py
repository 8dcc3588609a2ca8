"""Where rate limits are counted: in each process's memory.

app/core/ratelimit.py builds the storage from `rate_limit_storage`.
"""

from pydantic_settings import BaseSettings

# Rate limits counted in each process's memory.
MEMORY_RATE_LIMIT_STORAGE = "async+memory://"


class RateLimitStorageSettings(BaseSettings):
    @property
    def rate_limit_storage(self) -> tuple[str, dict[str, float | str | bool]]:
        """The `limits` storage URI and its options."""
        return MEMORY_RATE_LIMIT_STORAGE, {}
