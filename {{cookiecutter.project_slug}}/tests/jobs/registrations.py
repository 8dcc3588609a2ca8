"""Registrations sent to served apps, timed from their commit to their email's delivery: for
the tests of many registrations at once, on either jobs engine."""

import asyncio
import time
from collections.abc import Sequence

import httpx

from tests.factories import DEFAULT_PASSWORD
from tests.mail import Inbox
from tests.servers import Server

REGISTER = "/api/v1/auth/register"


def one_at_a_time(servers: Sequence[Server], inbox: Inbox, count: int) -> list[float]:
    """`count` registrations, each after the last one's email came: seconds from each answer
    (its commit happened just before) to its email's arrival, on an idle queue."""
    latencies: list[float] = []
    first = len(inbox.delivered)
    for n in range(count):
        response = httpx.post(
            f"{servers[n % len(servers)].base_url}{REGISTER}",
            json={"email": f"idle{n}@example.com", "password": DEFAULT_PASSWORD},
        )
        assert response.status_code == 201, response.text
        answered = time.monotonic()
        latencies.append(inbox.wait_for(first + n + 1)[-1].at - answered)
    return latencies


def all_at_once(servers: Sequence[Server], count: int, prefix: str) -> dict[str, float]:
    """`count` registrations at once, spread over the servers: each address with the
    time.monotonic() of its answer (its commit happened just before)."""

    async def register_all() -> dict[str, float]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def register(n: int) -> tuple[str, float]:
                email = f"{prefix}{n}@example.com"
                response = await client.post(
                    f"{servers[n % len(servers)].base_url}{REGISTER}",
                    json={"email": email, "password": DEFAULT_PASSWORD},
                )
                assert response.status_code == 201, response.text
                return email, time.monotonic()

            return dict(await asyncio.gather(*(register(n) for n in range(count))))

    return asyncio.run(register_all())
