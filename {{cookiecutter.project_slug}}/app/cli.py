"""`create-admin`: create the first admin, or promote an existing account.

The password comes from the ADMIN_PASSWORD environment variable or an interactive prompt,
never from the command line (it would land in shell history and `ps`).
"""

import argparse
import asyncio
import getpass
import os
import sys

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.core.config import get_settings
from app.core.errors import is_database_unavailable
from app.core.security import Passwords
from app.db.session import create_engine, create_sessionmaker
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="create-admin", description=__doc__.splitlines()[0])
    parser.add_argument("email")
    parser.add_argument("--full-name", default=None)
    args = parser.parse_args(argv)
    try:
        message = asyncio.run(create_admin(args.email, _read_password(), args.full_name))
    except Exception as error:
        if isinstance(error, SQLAlchemyError) and is_database_unavailable(error):
            raise SystemExit(
                f"error: cannot reach the database ({type(error).__name__}); "
                "is it running, and is DATABASE_URL right?"
            ) from None
        raise SystemExit(
            f"error: {type(error).__name__}: could not write to the database "
            "(has `make migrate` been run?)"
        ) from None
    print(message)  # noqa: T201


if __name__ == "__main__":
    main()
