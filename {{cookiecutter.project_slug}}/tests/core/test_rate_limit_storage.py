"""The in-process moving window (MovingWindowMemoryStorage) against `limits`' own.

`limits`' in-process storage is the reference: the same hits at the same times must get the
same answers from both. (Its window statistics count a hit exactly `expiry` seconds old as
outside the window while its hits count it as inside, so a refused hit can report one
remaining; ours count it as their hits do.) A clock of the test's own stands in for the time,
so windows expire without waiting.
"""

import time

import pytest
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from app.core.config import Settings
from app.core.ratelimit import SWEEP_SECONDS, MovingWindowMemoryStorage, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "time", fake)
    return fake


async def _answers(
    storage: MemoryStorage, clock: Clock, item: RateLimitItem, steps: list[tuple[float, str]]
) -> list[tuple[bool, float, int]]:
    """For each (seconds later, key): the hit's answer, then the key's reset time and remaining."""
    window = MovingWindowRateLimiter(storage)
    start, answers = clock.now, []
    for at, key in steps:
        clock.now = start + at
        allowed = await window.hit(item, "default", key)
        stats = await window.get_window_stats(item, "default", key)
        answers.append((allowed, stats.reset_time, stats.remaining))
    return answers


@pytest.mark.parametrize("limit", ["3 per 10 seconds", "1 per second", "5 per minute"])
async def test_answers_as_limits_own_memory_storage_does(clock: Clock, limit: str) -> None:
    item = parse(limit)
    # Bursts, refusals, hits right at the edge of the window, and two keys side by side.
    steps = [(0, "a"), (0, "a"), (1, "b"), (1, "a"), (2, "a"), (3, "a"), (9.5, "a")]
    steps += [(10, "a"), (10, "a"), (11, "a"), (12, "b"), (30, "a"), (59, "a"), (60, "a")]
    steps += [(61, "a"), (61, "a"), (75, "b"), (130, "a"), (130, "a"), (130.5, "a")]
    ours = await _answers(MovingWindowMemoryStorage(), clock, item, steps)
    clock.now = 1_000_000.0
    reference = await _answers(MemoryStorage(), clock, item, steps)
    assert [allowed for allowed, _, _ in ours] == [allowed for allowed, _, _ in reference]
    assert {allowed for allowed, _, _ in ours} == {True, False}  # the steps reach the limit
    start = 1_000_000.0
    for (at, _key), (allowed, reset, remaining) in zip(steps, ours, strict=True):
        # After a refusal nothing remains; the window ends within `expiry` of now.
        assert 0 <= remaining < item.amount
        assert allowed or remaining == 0
        assert start + at <= reset <= start + at + item.get_expiry()


async def test_a_hit_of_several_counts_them_all(clock: Clock) -> None:
    storage = MovingWindowMemoryStorage()
    assert await storage.acquire_entry("k", limit=5, expiry=60, amount=4)
    assert not await storage.acquire_entry("k", limit=5, expiry=60, amount=2)
    assert await storage.acquire_entry("k", limit=5, expiry=60, amount=1)
    assert not await storage.acquire_entry("k", limit=5, expiry=60, amount=6)
    assert await storage.get_moving_window("k", limit=5, expiry=60) == (clock.now, 5)


async def test_quiet_keys_are_dropped(clock: Clock) -> None:
    """A client that stops calling leaves nothing behind once its window has passed."""
    storage = MovingWindowMemoryStorage()
    for number in range(100):
        await storage.acquire_entry(f"client-{number}", limit=10, expiry=60)
    clock.now += 30
    await storage.acquire_entry("recent", limit=10, expiry=5)
    assert len(storage.windows) == 101
    clock.now += SWEEP_SECONDS  # the sweep is due; no window has passed yet
    await storage.acquire_entry("client-0", limit=10, expiry=60)
    assert len(storage.windows) == 100  # "recent" (5 s) has passed
    clock.now += 31
    await storage.acquire_entry("client-0", limit=10, expiry=60)
    assert set(storage.windows) == {"client-0"}


async def test_clear_and_reset_forget_the_hits(clock: Clock) -> None:
    storage = MovingWindowMemoryStorage()
    for key in ("a", "b"):
        assert await storage.acquire_entry(key, limit=1, expiry=60)
        assert not await storage.acquire_entry(key, limit=1, expiry=60)
    await storage.clear("a")
    assert await storage.acquire_entry("a", limit=1, expiry=60)
    assert await storage.reset() == 2
    assert await storage.acquire_entry("b", limit=1, expiry=60)


def test_the_app_counts_in_memory_with_this_storage() -> None:
    limiter = RateLimiter(Settings())
    assert isinstance(limiter.storage, MovingWindowMemoryStorage)
