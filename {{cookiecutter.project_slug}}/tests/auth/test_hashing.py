"""Password hashing runs on threads of its own: at most PASSWORD_HASH_CONCURRENCY hashings at
once (so at most that many x PASSWORD_HASH_MEMORY_KIB of memory), below the event loop's
priority, and never in the threads the rest of the app runs blocking work in."""

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator

import anyio.to_thread
import pytest

from app.core.config import Settings
from app.core.security import HASH_THREAD_NICENESS
from tests.passwords import ObservedPasswords


def _settings(concurrency: int) -> Settings:
    """Real Argon2id at a cost that takes some tens of milliseconds: overlaps are measurable."""
    return Settings(
        PASSWORD_HASH_CONCURRENCY=concurrency,
        PASSWORD_HASH_TIME_COST=2,
        PASSWORD_HASH_MEMORY_KIB=16 * 1024,
    )


@pytest.fixture
async def one_shared_thread() -> AsyncIterator[None]:
    """The app's shared worker threads cut to one: work that needs it waits for any taker."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    total = limiter.total_tokens
    limiter.total_tokens = 1
    yield
    limiter.total_tokens = total


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_hashings_run_at_most_as_many_at_once_as_configured(concurrency: int) -> None:
    passwords = ObservedPasswords(_settings(concurrency))
    hashes = await asyncio.gather(*(passwords.hash(f"password {n}") for n in range(4)))
    assert len(set(hashes)) == 4
    assert len(passwords.runs) == 4
    # Measured inside the threads: with 2 allowed, 2 do overlap, so the measure can tell.
    assert passwords.most_at_once() == concurrency


@pytest.mark.usefixtures("one_shared_thread")
async def test_hashing_leaves_the_shared_threads_free() -> None:
    loop = asyncio.get_running_loop()
    began = asyncio.Event()
    # The probe runs in the hashing's thread, just before it hashes.
    passwords = ObservedPasswords(_settings(1), probe=lambda: loop.call_soon_threadsafe(began.set))
    hashing = asyncio.gather(*(passwords.hash(f"password {n}") for n in range(3)))
    with anyio.fail_after(10):
        await began.wait()
        await anyio.to_thread.run_sync(time.sleep, 0)  # other blocking work, on the shared one
    other_done = time.monotonic()
    await hashing
    first_end = min(end for _, end in passwords.runs)
    assert other_done < first_end, "other work waited for a hashing"


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are a Linux feature")
async def test_hashing_runs_below_the_event_loops_priority() -> None:
    """So a flood of logins cannot take the core the event loop (every other request) needs."""

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    passwords = ObservedPasswords(_settings(1), probe=niceness)
    await passwords.hash("a password to hash")
    assert passwords.probed == [min(niceness() + HASH_THREAD_NICENESS, 19)]  # 19: the lowest
