"""The real password hasher, observed: when each hashing ran, what was true meanwhile."""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, get_settings
from app.core.security import Passwords
from app.users.models import User

T = TypeVar("T")


class ObservedPasswords(Passwords):
    """Records the (start, end) of every hashing, timed inside the worker thread that runs it,
    and what `probe` (if given) returned there just before the hashing began."""

    def __init__(self, settings: Settings, probe: Callable[[], object] | None = None) -> None:
        super().__init__(settings)
        self.probe = probe
        self.runs: list[tuple[float, float]] = []
        self.probed: list[object] = []
        self._lock = threading.Lock()

    def _observed(self, work: Callable[[], T]) -> T:
        seen = self.probe() if self.probe is not None else None
        start = time.monotonic()
        try:
            return work()
        finally:
            with self._lock:
                self.runs.append((start, time.monotonic()))
                if self.probe is not None:
                    self.probed.append(seen)

    def _hash(self, password: str) -> str:
        return self._observed(lambda: super(ObservedPasswords, self)._hash(password))

    def _verify_and_update(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        return self._observed(
            lambda: super(ObservedPasswords, self)._verify_and_update(password, password_hash)
        )

    def _verify_against_dummy(self, password: str) -> None:
        self._observed(lambda: super(ObservedPasswords, self)._verify_against_dummy(password))

    def most_at_once(self) -> int:
        """The most hashings that ran at the same moment."""
        events = [(start, 1) for start, _ in self.runs] + [(end, -1) for _, end in self.runs]
        events.sort()
        running = most = 0
        for _, change in events:
            running += change
            most = max(most, running)
        return most


class ChangedWhileChecking(Passwords):
    """The real hasher; while it checks a password, another request changes every account."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], **changes: object) -> None:
        super().__init__(get_settings())
        self.sessionmaker = sessionmaker
        self.changes = changes

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        result = await super().verify(password, password_hash)
        async with self.sessionmaker() as other:
            await other.execute(update(User).values(**self.changes))
            await other.commit()
        return result
