"""Test harness: one migrated SQLite database per run (per xdist worker), one rolled-back
transaction per test, and the app's own session dependency running on top of it."""

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import PROJECT_DIR, Settings

# The run's settings, fixed before the app is imported: nothing from the developer's shell or
# `.env` may change what the tests see.
_DATABASE_DIR = Path(tempfile.mkdtemp(prefix="test-db-"))
atexit.register(shutil.rmtree, _DATABASE_DIR, ignore_errors=True)
TEST_SETTINGS = {
    "ENVIRONMENT": "test",
    "DATABASE_URL": f"sqlite+aiosqlite:///{_DATABASE_DIR / 'test.db'}",
    "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789abcdef",
    # Real Argon2id, at the smallest cost it accepts: a verify takes microseconds, not 150 ms.
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "8",
    "PASSWORD_HASH_PARALLELISM": "1",
    "LOG_LEVEL": "INFO",
    # Limits no ordinary test comes near; the rate limit tests set their own.
    "RATE_LIMIT_DEFAULT": "100000/minute",
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_LOGIN_USERNAME": "100000/minute",
    "RATE_LIMIT_REGISTER": "100000/minute",
{%- if cookiecutter.use_redis %}
    "RATE_LIMIT_STORAGE": "memory",  # tests/core/test_rate_limit_redis.py uses Redis for real
{%- endif %}
}
Settings.model_config["env_file"] = None
for _name in Settings.model_fields:
    os.environ.pop(_name, None)
os.environ.update(TEST_SETTINGS)

from app.core.config import get_settings  # noqa: E402
from app.db.session import create_engine, get_sessionmaker  # noqa: E402
from app.main import create_app  # noqa: E402
from app.users.models import Role, User  # noqa: E402
from tests import factories  # noqa: E402


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def migrated_database() -> str:
    """The schema is built by the migrations themselves, so every run tests them."""
    url = get_settings().DATABASE_URL
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="session")
async def engine(migrated_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(get_settings(), url=migrated_database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that every session of the test joins through savepoints, then undone."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def app(sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = create_app()

    async def test_sessionmaker() -> async_sessionmaker[AsyncSession]:
        return sessionmaker

    app.dependency_overrides[get_sessionmaker] = test_sessionmaker
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await factories.create_user(session, full_name="Ada User")


@pytest.fixture
async def admin(session: AsyncSession) -> User:
    return await factories.create_user(session, role=Role.ADMIN, full_name="Grace Admin")


@pytest.fixture
def user_headers(user: User) -> dict[str, str]:
    return factories.auth_headers(user)


@pytest.fixture
def admin_headers(admin: User) -> dict[str, str]:
    return factories.auth_headers(admin)


# --- Apps with other settings (rate limits, hardening) ------------------------------------------


@pytest.fixture
def app_with(sessionmaker: async_sessionmaker[AsyncSession]) -> Callable[..., FastAPI]:
    """Builds an app whose settings differ from the run's, on the test's transaction.

    Each app counts its rate limits in a storage of its own, so no test sees another's hits.
    """

    async def test_sessionmaker() -> async_sessionmaker[AsyncSession]:
        return sessionmaker

    def build(**overrides: Any) -> FastAPI:
        app = create_app(Settings(**overrides))
        app.dependency_overrides[get_sessionmaker] = test_sessionmaker
        return app

    return build


def client_at(
    app: FastAPI, address: str = "127.0.0.1", base_url: str = "http://testserver"
) -> AsyncClient:
    """A client of `app` whose requests come from `address`, as the server would see it."""
    return AsyncClient(transport=ASGITransport(app=app, client=(address, 40000)), base_url=base_url)
