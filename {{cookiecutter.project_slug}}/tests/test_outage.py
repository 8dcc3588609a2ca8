"""A database outage, for real: the served app talks to PostgreSQL through a loopback proxy
that the test stops (the outage) and starts again (the recovery). The machine's own server is
never touched.
"""

import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.core.errors import PROBLEM_JSON
from tests import databases
from tests.outage import Outage
from tests.servers import Server, serve

logger = logging.getLogger(__name__)
PASSWORD = "a long enough password"
RECOVERY_DEADLINE = 30.0


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Outage]]:
    log_path = tmp_path_factory.mktemp("outage") / "server.log"
    with databases.scratch_database(databases.new_database_url("outage"), migrated=True) as url:
        real = make_url(url)
        proxy = Outage(real.host or "127.0.0.1", real.port or 5432)
        proxy.restore()
        through_proxy = real.set(host="127.0.0.1", port=proxy.port)
        env = {"DATABASE_CONNECT_TIMEOUT": "2", "DATABASE_POOL_TIMEOUT": "5"}
        try:
            with serve(
                through_proxy.render_as_string(hide_password=False), log_path, workers=2, env=env
            ) as server:
                yield server, proxy
        finally:
            proxy.close()


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert "Traceback" not in response.text


def test_outage_answers_503_and_recovers_without_a_restart(
    outage: tuple[Server, Outage],
) -> None:
    server, proxy = outage
    with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=30) as client:
        registered = client.post(
            "/auth/register", json={"email": "steady@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201
        login = client.post(
            "/auth/login", data={"username": "steady@example.com", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for _ in range(4):  # connections now pooled in both workers
            assert client.get("/users/me", headers=headers).status_code == 200

        proxy.cut()
        cut_at = time.monotonic()
        for _ in range(4):  # both workers, pooled connections and fresh ones
            _assert_unavailable(client.get("/health/ready"))
            _assert_unavailable(client.get("/users/me", headers=headers))
            _assert_unavailable(
                client.post(
                    "/auth/register", json={"email": "during@example.com", "password": PASSWORD}
                )
            )
        assert client.get("/health/live").status_code == 200  # the process itself is fine
        logger.info("outage: 12 requests answered 503 in %.2f s", time.monotonic() - cut_at)

        proxy.restore()
        restored_at = time.monotonic()
        consecutive = 0
        while consecutive < 10:  # ten in a row, so both workers are back
            ready = client.get("/health/ready")
            consecutive = consecutive + 1 if ready.status_code == 200 else 0
            if consecutive == 0:
                _assert_unavailable(ready)
                assert time.monotonic() - restored_at < RECOVERY_DEADLINE, "did not recover"
                time.sleep(0.05)
        logger.info(
            "outage: ready again %.2f s after the database came back",
            time.monotonic() - restored_at,
        )

        assert client.get("/users/me", headers=headers).status_code == 200
        again = client.post(
            "/auth/register", json={"email": "after@example.com", "password": PASSWORD}
        )
        assert again.status_code == 201

    log = server.log()
    assert "database unavailable" in log
    assert "Traceback" not in log
    assert '"status": 500' not in log
