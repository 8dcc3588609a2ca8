from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import get_settings
from app.core.errors import PROBLEM_JSON
from app.db.session import create_engine, create_sessionmaker, get_sessionmaker
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
    app: FastAPI, client: AsyncClient
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

        register = await client.post(
            "/api/v1/auth/register", json={"email": "a@example.com", "password": "long enough"}
        )
        assert register.status_code == 503
        assert register.json()["code"] == "database_unavailable"
        assert register.headers["retry-after"] == "5"
    finally:
        await engine.dispose()
