"""Operator commands.

`create-admin` creates the first admin, or promotes an existing account. The password comes
from the ADMIN_PASSWORD environment variable or an interactive prompt, never from the command
line (it would land in shell history and `ps`).

`prune-tokens` deletes the refresh tokens of logins that ended (every token revoked or
expired) more than `--keep-days` ago; run it on a schedule.

`jobs list [--dead]` shows the background jobs still queued, or only the dead ones with their
last error; `jobs retry ID` puts a dead job back in the queue with all its tries.
"""

import argparse
import asyncio
import getpass
import os
import sys
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.service import prune_refresh_tokens
from app.core.config import get_settings
from app.core.errors import AppError, is_database_unavailable
from app.core.security import Passwords
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.jobs import service as jobs_service
from app.jobs.models import JobStatus
from app.users import service
from app.users.models import Role
from app.users.schemas import UserCreate


def _read_password() -> str:
    password = os.environ.get("ADMIN_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit("error: set ADMIN_PASSWORD or run in a terminal to be prompted")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Repeat password: "):
        raise SystemExit("error: the passwords do not match")
    return password


async def _ensure_migrated(engine: AsyncEngine, table: str) -> None:
    async with engine.connect() as connection:
        exists = await connection.run_sync(lambda sync: inspect(sync).has_table(table))
    if not exists:
        raise SystemExit(f"error: the database has no {table} table; run `make migrate` first")


async def create_admin(email: str, password: str, full_name: str | None) -> str:
    """Create the admin, or promote the account; returns what was done, for the operator."""
    try:
        data = UserCreate(email=email, password=password, full_name=full_name)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"error: {problems}") from None
    settings = get_settings()
    engine = create_engine(settings)
    try:
        await _ensure_migrated(engine, "users")
        async with create_sessionmaker(engine)() as session, session.begin():
            existing = await service.get_user_by_email(session, email=data.email)
            if existing is None:
                await service.create_user(
                    session, passwords=Passwords(settings), data=data, role=Role.ADMIN
                )
                return f"created admin {data.email}"
            if existing.is_admin and existing.is_active:
                return f"{data.email} is already an admin; nothing changed"
            done = (
                f"reactivated admin {data.email}"
                if existing.is_admin
                else (f"promoted {data.email} to admin")
            )
            existing.role = Role.ADMIN
            existing.is_active = True
            return f"{done} (the existing password is kept)"
    finally:
        await engine.dispose()


async def prune_tokens(keep_days: int) -> str:
    """Delete the refresh tokens of logins that ended more than `keep_days` ago."""
    engine = create_engine(get_settings())
    try:
        await _ensure_migrated(engine, "refresh_tokens")
        async with create_sessionmaker(engine)() as session, session.begin():
            older_than = datetime.now(UTC) - timedelta(days=keep_days)
            deleted = await prune_refresh_tokens(session, older_than=older_than)
        return f"deleted {deleted} refresh tokens of logins that ended over {keep_days} days ago"
    finally:
        await engine.dispose()


# Jobs `jobs list` shows at most.
JOBS_LIST_LIMIT = 100


async def list_jobs(*, dead_only: bool) -> str:
    """The queued jobs (or only the dead ones), oldest first, one line each."""
    engine = create_engine(get_settings())
    try:
        await _ensure_migrated(engine, "jobs")
        async with create_sessionmaker(engine)() as session, session.begin():
            jobs, total = await jobs_service.list_jobs(
                session,
                status=JobStatus.DEAD if dead_only else None,
                limit=JOBS_LIST_LIMIT,
                offset=0,
            )
    finally:
        await engine.dispose()
    what = "dead jobs" if dead_only else "queued jobs"
    lines = [f"{total} {what}" + (f" (the first {len(jobs)})" if total > len(jobs) else "")]
    for job in jobs:
        created = f"{job.created_at:%Y-%m-%dT%H:%M:%SZ}"
        line = f"{job.id}  {job.status}  attempts={job.attempts}  {job.name}  {created}"
        first_error_line = (job.last_error or "").strip().partition("\n")[0]
        if first_error_line:
            line += f"  last error: {first_error_line}"
        lines.append(line)
    return "\n".join(lines)


async def retry_job(job_id: uuid.UUID) -> str:
    """Put a dead job back in the queue, due now, with all its tries."""
    engine = create_engine(get_settings())
    try:
        await _ensure_migrated(engine, "jobs")
        async with create_sessionmaker(engine)() as session, session.begin():
            job = await jobs_service.retry_job(session, job_id=job_id)
            return f"job {job.id} ({job.name}) is queued again; a runner starts it shortly"
    finally:
        await engine.dispose()


def _run(command: Coroutine[Any, Any, str]) -> None:
    """Run a command and print its outcome. Database outages, database errors and refusals
    each get one line of their own; anything else is a bug and shows its traceback."""
    try:
        message = asyncio.run(command)
    except AppError as error:
        raise SystemExit(f"error: {error.detail}") from None
    except SQLAlchemyError as error:
        if is_database_unavailable(error):
            raise SystemExit(
                f"error: cannot reach the database ({type(error).__name__}); "
                "is it running, and is DATABASE_URL right?"
            ) from None
        cause = getattr(error, "orig", None) or error
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise SystemExit(
            f"error: the database refused the command ({type(cause).__name__}: {first_line}); "
            "is it migrated to the latest revision (`make migrate`)?"
        ) from None
    print(message)  # noqa: T201


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="create-admin", description="Create the first admin, or promote an account."
    )
    parser.add_argument("email")
    parser.add_argument("--full-name", default=None)
    args = parser.parse_args(argv)
    password = _read_password()
    _run(create_admin(args.email, password, args.full_name))


def prune_tokens_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="prune-tokens",
        description="Delete the refresh tokens of logins that ended (revoked or expired).",
    )
    parser.add_argument(
        "--keep-days",
        type=int,
        default=30,
        help="keep ended logins this many days, for audits (default: 30)",
    )
    args = parser.parse_args(argv)
    if args.keep_days < 0:
        parser.error("--keep-days must be 0 or more")
    _run(prune_tokens(args.keep_days))


def jobs_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="jobs", description="Show the background jobs, and retry the dead ones."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="jobs still queued (pending, running or dead)")
    listing.add_argument("--dead", action="store_true", help="only the dead ones")
    retry = commands.add_parser("retry", help="queue a dead job again")
    retry.add_argument("job_id", metavar="ID")
    args = parser.parse_args(argv)
    if args.command == "list":
        _run(list_jobs(dead_only=args.dead))
        return
    try:
        job_id = uuid.UUID(args.job_id)
    except ValueError:
        parser.error(f"{args.job_id!r} is not a job id (a UUID, as `jobs list` shows)")
    _run(retry_job(job_id))


if __name__ == "__main__":
    main()
