import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, select, text, update

from app import cli
from app.auth import service as auth_service
from app.auth.models import RefreshToken
from app.core.config import get_settings
from app.core.security import Passwords, Tokens
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.users import service as users_service
from app.users.models import Role, User
from app.users.schemas import UserCreate
from tests.databases import alembic_config


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Points the settings the command reads at another database, for this test only."""

    def use(url: str) -> None:
        monkeypatch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()

    yield use
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def cli_database(empty_database: str, use_database: Callable[[str], None]) -> str:
    """A migrated database of its own, since the command commits for real."""
    command.upgrade(alembic_config(empty_database), "head")
    use_database(empty_database)
    return empty_database


async def _role_of(url: str, email: str) -> Role | None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await session.scalar(select(User).where(User.email == email))
            return user.role if user else None
    finally:
        await engine.dispose()


def test_create_admin_from_the_environment(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "a long admin password")
    cli.main(["Root@Example.com"])
    assert capsys.readouterr().out.strip() == "created admin root@example.com"
    assert asyncio.run(_role_of(cli_database, "root@example.com")) is Role.ADMIN

    cli.main(["root@example.com"])
    assert "already an admin" in capsys.readouterr().out


def test_create_admin_refuses_a_short_password(
    cli_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "short")
    with pytest.raises(SystemExit) as exited:
        cli.main(["root@example.com"])
    assert "password" in str(exited.value.code)
    assert asyncio.run(_role_of(cli_database, "root@example.com")) is None


def test_create_admin_without_a_password_source_says_how(
    cli_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(SystemExit) as exited:
        cli.main(["root@example.com"])
    assert "ADMIN_PASSWORD" in str(exited.value.code)


def test_create_admin_explains_an_unmigrated_database(
    empty_database: str, monkeypatch: pytest.MonkeyPatch, use_database: Callable[[str], None]
) -> None:
    use_database(empty_database)
    monkeypatch.setenv("ADMIN_PASSWORD", "a long admin password")
    with pytest.raises(SystemExit) as exited:
        cli.main(["root@example.com"])
    assert "make migrate" in str(exited.value.code)


def test_create_admin_promotes_an_existing_user(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "a long user password")
    asyncio.run(_create_plain_user(cli_database, "member@example.com"))
    assert asyncio.run(_role_of(cli_database, "member@example.com")) is Role.USER

    cli.main(["member@example.com"])
    assert capsys.readouterr().out.strip() == (
        "promoted member@example.com to admin (the existing password is kept)"
    )
    assert asyncio.run(_role_of(cli_database, "member@example.com")) is Role.ADMIN


def test_create_admin_reactivates_a_deactivated_admin(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command that recovers admin access must also recover a locked-out admin."""
    monkeypatch.setenv("ADMIN_PASSWORD", "a long admin password")
    cli.main(["root@example.com"])
    asyncio.run(_set_active(cli_database, "root@example.com", active=False))
    capsys.readouterr()

    cli.main(["root@example.com"])
    assert capsys.readouterr().out.strip() == (
        "reactivated admin root@example.com (the existing password is kept)"
    )
    assert asyncio.run(_is_active(cli_database, "root@example.com")) is True


def test_create_admin_prompts_and_refuses_a_mistyped_repeat(
    cli_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["a long admin password", "a long admin passwort"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    with pytest.raises(SystemExit) as exited:
        cli.main(["root@example.com"])
    assert "do not match" in str(exited.value.code)
    assert asyncio.run(_role_of(cli_database, "root@example.com")) is None


async def _set_active(url: str, email: str, *, active: bool) -> None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await session.execute(update(User).where(User.email == email).values(is_active=active))
    finally:
        await engine.dispose()


async def _is_active(url: str, email: str) -> bool | None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await session.scalar(select(User.is_active).where(User.email == email))
    finally:
        await engine.dispose()


async def _create_plain_user(url: str, email: str) -> None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await users_service.create_user(
                session,
                passwords=Passwords(get_settings()),
                data=UserCreate(email=email, password="a long user password"),
            )
    finally:
        await engine.dispose()


def test_create_admin_names_a_database_error_that_is_no_outage(
    cli_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema behind the code is neither an outage nor a missing migration run."""
    asyncio.run(_execute(cli_database, "ALTER TABLE users DROP COLUMN full_name"))
    monkeypatch.setenv("ADMIN_PASSWORD", "a long admin password")
    with pytest.raises(SystemExit) as exited:
        cli.main(["root@example.com"])
    message = str(exited.value.code)
    assert message.startswith("error: the database refused the command (")
    assert "full_name" in message
    assert "cannot reach" not in message


def test_create_admin_lets_a_bug_show_as_a_bug(
    cli_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not every failure is the database's: a bug keeps its traceback."""

    async def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(users_service, "get_user_by_email", broken)
    monkeypatch.setenv("ADMIN_PASSWORD", "a long admin password")
    with pytest.raises(ZeroDivisionError):
        cli.main(["root@example.com"])


async def _execute(url: str, sql: str) -> None:
    engine = create_engine(get_settings(), url=url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


async def _logins(url: str, ended_days_ago: list[int]) -> None:
    """One login (refresh-token family) per entry, ended that many days ago (-1: running)."""
    engine = create_engine(get_settings(), url=url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            user = await users_service.create_user(
                session,
                passwords=Passwords(get_settings()),
                data=UserCreate(email="member@example.com", password="a long password"),
            )
            now = datetime.now(UTC)
            for days in ended_days_ago:
                pair = await auth_service.issue_tokens(
                    session, tokens=Tokens(get_settings()), user=user
                )
                if days >= 0:
                    await session.execute(
                        update(RefreshToken)
                        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                        .values(revoked_at=now - timedelta(days=days))
                    )
                assert pair.refresh_token
    finally:
        await engine.dispose()


async def _token_count(url: str) -> int:
    engine = create_engine(get_settings(), url=url)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(RefreshToken))
            return int(count or 0)
    finally:
        await engine.dispose()


def test_prune_tokens_deletes_logins_ended_before_the_kept_days(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_logins(cli_database, [40, 31, 10, -1]))
    cli.prune_tokens_main([])  # keeps 30 days
    assert capsys.readouterr().out.strip() == (
        "deleted 2 refresh tokens of logins that ended over 30 days ago"
    )
    assert asyncio.run(_token_count(cli_database)) == 2

    cli.prune_tokens_main(["--keep-days", "5"])
    assert "deleted 1 refresh tokens" in capsys.readouterr().out
    assert asyncio.run(_token_count(cli_database)) == 1  # the running login stays


def test_prune_tokens_explains_an_unmigrated_database(
    empty_database: str, use_database: Callable[[str], None]
) -> None:
    use_database(empty_database)
    with pytest.raises(SystemExit) as exited:
        cli.prune_tokens_main([])
    assert "make migrate" in str(exited.value.code)


def test_prune_tokens_refuses_negative_days(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.prune_tokens_main(["--keep-days", "-1"])
    assert "--keep-days must be 0 or more" in capsys.readouterr().err
