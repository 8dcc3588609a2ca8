"""Test harness: one migrated throw-away database per run (per xdist worker), one rolled-back
transaction per test, and the app's own session dependency running on top of it."""

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from tests import databases

# The run's settings, fixed before the app is imported: nothing from the developer's shell or
# `.env` may change what the tests see.
TEST_SETTINGS = {
    "ENVIRONMENT": "test",
    "DATABASE_URL": databases.new_database_url("suite"),
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
    "RATE_LIMIT_CURRENT_PASSWORD": "100000/minute",
    "RATE_LIMIT_REGISTER": "100000/minute",
    # Each app's lifespan would freeze the test process's objects and collect everything first;
    # tests/core/test_runtime.py turns it on where it is the subject.
    "GC_TUNING": "false",
}
if "RATE_LIMIT_STORAGE" in Settings.model_fields:
    # Limits kept in Redis are counted in memory here: tests/core/test_rate_limit_redis.py
    # runs them on Redis for real.
    TEST_SETTINGS["RATE_LIMIT_STORAGE"] = "memory"
# Jobs run in the test process (the embedded runner), even in a project whose jobs go to
# Dramatiq workers: tests/jobs/test_dramatiq.py runs that engine, on RabbitMQ, for real.
TEST_SETTINGS["JOBS_ENGINE"] = "embedded"
Settings.model_config["env_file"] = None
for _name in Settings.model_fields:
    os.environ.pop(_name, None)
os.environ.update(TEST_SETTINGS)

from app.core.config import get_settings  # noqa: E402
from app.core.logging import configure_logging  # noqa: E402
from app.core.ratelimit import RateLimiter  # noqa: E402
from app.core.security import Passwords, Tokens  # noqa: E402
from app.db.engine import create_engine  # noqa: E402
from app.db.session import get_sessionmaker  # noqa: E402
from app.main import create_app  # noqa: E402
from app.users.models import Role, User  # noqa: E402
from tests import factories  # noqa: E402
from tests.servers import ServedGroupScheduling, serve, write_groups  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's, which is off")
    if databases.unavailable_reason() is None:
        return
    # The database tests skip (with the reason); a coverage gate over what is left would fail
    # for that reason alone, so it is off for this run.
    coverage = config.pluginmanager.getplugin("_cov")
    if coverage is not None:
        coverage.options.cov_fail_under = 0


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """With pytest-xdist switched off (`-p no:xdist`), the options pyproject.toml's addopts give
    it are still accepted, and ignored: the run is serial."""
    if not pluginmanager.hasplugin("xdist"):
        parser.addoption("--numprocesses", dest="numprocesses", help="(pytest-xdist is off)")
        parser.addoption("--dist", dest="dist", help="(pytest-xdist is off)")


# Session fixtures that start a real uvicorn: each is an xdist group, so one worker runs all the
# tests that use it and the server starts once per run.
SERVER_FIXTURES = ("race_server", "production_cost_server", "server")
# Where the workers of a parallel run tell the controller which test belongs to which group.
GROUPS_DIR = "served_groups_dir"
_groups_dir = pytest.StashKey[Path]()


# First: pytest-xdist reads the groups in a hook of its own.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups the served tests by server, and puts them first: they mostly wait on their
    servers (start-up, races), which the other workers spend running the rest."""
    served: dict[str, list[pytest.Item]] = {name: [] for name in SERVER_FIXTURES}
    rest: list[pytest.Item] = []
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        group = next((name for name in SERVER_FIXTURES if name in fixtures), None)
        if group is None:
            rest.append(item)
        else:
            item.add_marker(pytest.mark.xdist_group(group))
            served[group].append(item)
    items[:] = [item for group in served.values() for item in group] + rest
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and GROUPS_DIR in workerinput:
        groups = {
            item.nodeid: str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for item in items
            if (mark := item.get_closest_marker("xdist_group")) is not None
        }
        write_groups(Path(workerinput[GROUPS_DIR]), workerinput["workerid"], groups)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """In the controller of a parallel run: a folder for the workers' groups."""
    config: pytest.Config = node.config
    if _groups_dir not in config.stash:
        config.stash[_groups_dir] = Path(tempfile.mkdtemp(prefix="test-groups-"))
    node.workerinput[GROUPS_DIR] = str(config.stash[_groups_dir])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getoption("dist") != "loadgroup" or _groups_dir not in config.stash:
        return None
    return ServedGroupScheduling(config, log, config.stash[_groups_dir])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _groups_dir in config.stash:
        shutil.rmtree(config.stash[_groups_dir], ignore_errors=True)


def pytest_report_header() -> str | None:
    reason = databases.unavailable_reason()
    return f"database tests skip: {reason}" if reason else None


@pytest.fixture(scope="session")
def migrated_database() -> Iterator[str]:
    """The schema is built by the migrations themselves, so every run tests them."""
    with databases.scratch_database(get_settings().DATABASE_URL, migrated=True) as url:
        yield url


# The served app's body limit, small so its 413 tests send little.
SERVED_BODY_LIMIT = 4096


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One real uvicorn for the run's served tests, on a migrated database of its own."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {"MAX_REQUEST_BODY_BYTES": str(SERVED_BODY_LIMIT)}
    with (
        databases.scratch_database(databases.new_database_url("server"), migrated=True) as url,
        serve(url, log_path, env=env) as served,
    ):
        yield served.base_url, log_path


@dataclass(frozen=True)
class Served:
    """A real uvicorn shared by the tests of a run, and the database it serves."""

    base_url: str
    database_url: str
    log_path: Path


@contextmanager
def _served(
    tmp_path_factory: pytest.TempPathFactory,
    label: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    log_path = tmp_path_factory.mktemp(label) / "server.log"
    with (
        databases.scratch_database(databases.new_database_url(label), migrated=True) as url,
        serve(url, log_path, workers=workers, env=env) as server,
    ):
        yield Served(base_url=server.base_url, database_url=url, log_path=log_path)
        assert "Traceback" not in server.log()


# Workers of the served app that races run against: requests truly at once, in processes that
# share nothing but the database.
RACE_WORKERS = 2


@pytest.fixture(scope="session")
def race_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Several uvicorn workers on one database, for the race tests (tests/test_concurrency.py,
    tests/test_lost_updates.py): each race uses accounts and rows of its own."""
    with _served(tmp_path_factory, "races", workers=RACE_WORKERS) as served:
        yield served


@pytest.fixture(scope="session")
def production_cost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One uvicorn hashing at the production cost (Settings' defaults), with the default body
    limit, for the tests that time the served app."""
    production_cost = {
        name: str(Settings.model_fields[name].default)
        for name in (
            "PASSWORD_HASH_TIME_COST",
            "PASSWORD_HASH_MEMORY_KIB",
            "PASSWORD_HASH_PARALLELISM",
        )
    }
    with _served(tmp_path_factory, "hashcost", env=production_cost) as served:
        yield served


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new database with no tables, for a test that needs one of its own; dropped after."""
    with databases.scratch_database(databases.new_database_url("scratch")) as url:
        yield url


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


class _RunApp:
    """The app the tests share: one per run (per xdist worker), since FastAPI prepares each route
    on its first request and doing that again for every test would cost most of the run.

    Each test lends it that test's own sessionmaker (its rolled-back transaction) and a fresh
    rate limit storage, so no test sees another's rows or hits. A test that changes the app
    itself (adds a route, overrides a dependency, replaces what `app.state` holds) leaves it
    to that test alone: the next test gets a new one.
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._lent: tuple[object, ...] = ()

    @staticmethod
    def _parts(app: FastAPI) -> tuple[object, ...]:
        """What a test could change on the app, by identity: routes, overrides, state."""
        return (
            list(app.router.routes),
            dict(app.dependency_overrides),
            dict(vars(app.state)["_state"]),
        )

    async def test_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        assert self.sessionmaker is not None, "the app is used outside its test"
        return self.sessionmaker

    def lend(self, sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
        if self.app is None:
            self.app = create_app()
            self.app.dependency_overrides[get_sessionmaker] = self.test_sessionmaker
        else:
            # What create_app does for each app: the run's logging (a test may have changed it).
            configure_logging(get_settings().LOG_LEVEL)
        self.app.state.rate_limiter = RateLimiter(get_settings(), metrics=self.app.state.metrics)
        self.sessionmaker = sessionmaker
        self._lent = self._parts(self.app)
        return self.app

    def take_back(self) -> None:
        self.sessionmaker = None
        app = self.app
        if app is not None and self._lent != self._parts(app):
            self.app = None


_run_app = _RunApp()


@pytest.fixture
def app(sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[FastAPI]:
    """The run's app on this test's transaction, with a rate limit storage of its own."""
    try:
        yield _run_app.lend(sessionmaker)
    finally:
        _run_app.take_back()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def tokens(app: FastAPI) -> Tokens:
    """The app's token issuer and verifier, for service tests and hand-made tokens."""
    tokens: Tokens = app.state.tokens
    return tokens


@pytest.fixture
def passwords(app: FastAPI) -> Passwords:
    """The app's password hasher (the run's cost), for service tests."""
    passwords: Passwords = app.state.passwords
    return passwords


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
