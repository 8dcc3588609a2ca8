import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import get_settings
from app.core.errors import PROBLEM_JSON, is_database_unavailable
from app.db.engine import create_engine
from app.db.session import create_sessionmaker, get_sessionmaker
from tests import databases


async def test_live(client: AsyncClient) -> None:
    response = await client.get("/api/v1/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_the_database_answers(client: AsyncClient) -> None:
    response = await client.get("/api/v1/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_not_ready_and_api_unavailable_when_the_database_is_gone(
    app: FastAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(get_settings(), url=databases.unreachable_database_url())
    broken = create_sessionmaker(engine)

    async def broken_sessionmaker() -> async_sessionmaker[AsyncSession]:
        return broken

    app.dependency_overrides[get_sessionmaker] = broken_sessionmaker
    try:
        ready = await client.get("/api/v1/health/ready")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == PROBLEM_JSON
        assert ready.json()["code"] == "database_unavailable"
        # The probe's caller sees a 503; the log says why.
        causes = [r.getMessage() for r in caplog.records if r.name == "app.health.router"]
        assert causes
        assert causes[0].startswith("not ready: the database cannot be reached: OperationalError")

        register = await client.post(
            "/api/v1/auth/register", json={"email": "a@example.com", "password": "long enough"}
        )
        assert register.status_code == 503
        assert register.json()["code"] == "database_unavailable"
        assert register.headers["retry-after"] == "5"
    finally:
        await engine.dispose()


async def test_a_broken_statement_is_a_bug_not_an_outage(session: AsyncSession) -> None:
    with pytest.raises(DBAPIError) as caught:
        await session.execute(text("SELECT * FROM no_such_table"))
    assert not is_database_unavailable(caught.value)
