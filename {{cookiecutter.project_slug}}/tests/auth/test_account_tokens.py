"""The account emails' tokens and requests, in the test's own rolled-back transaction (their
emails, sent by jobs, are tested end to end in tests/jobs/test_account_emails.py)."""

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.auth import service
from app.auth.account_tokens import issue_account_token
from app.auth.exceptions import InvalidResetToken, InvalidVerificationToken
from app.auth.models import AccountToken, AccountTokenPurpose
from app.core.security import Passwords
from app.jobs.models import Job
from app.users.models import User

RESET = "/api/v1/auth/password-reset"
RESEND = "/api/v1/auth/verify-email/resend"
HOUR = timedelta(hours=1)


@contextmanager
def statements(connection: AsyncConnection) -> Iterator[list[str]]:
    """The SQL the test's connection runs meanwhile (every request of the test uses it)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        # The test transaction's savepoints are numbered; what matters is that they are alike.
        seen.append(re.sub(r"sa_savepoint_\d+", "sa_savepoint", args[2]))

    event.listen(connection.sync_connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", record)


@pytest.mark.parametrize("path", [RESET, RESEND])
async def test_a_request_does_the_same_work_whether_or_not_the_address_has_an_account(
    client: AsyncClient, connection: AsyncConnection, user: User, path: str
) -> None:
    """The same statements, the same answer: neither the body nor the time a request takes
    can tell whether an account has the address (the job that mails it looks that up)."""
    with statements(connection) as known:
        known_answer = await client.post(path, json={"email": user.email})
    with statements(connection) as unknown:
        unknown_answer = await client.post(path, json={"email": "nobody@example.com"})
    assert known_answer.status_code == unknown_answer.status_code == 202
    assert known_answer.content == unknown_answer.content
    assert known == unknown
    assert any(sql.lstrip().upper().startswith("INSERT INTO JOBS") for sql in known)


async def test_a_request_enqueues_one_job_with_the_address_it_was_given(
    client: AsyncClient, session: AsyncSession
) -> None:
    await client.post(RESET, json={"email": "Someone@Example.com"})
    (job,) = await session.scalars(select(Job))
    assert (job.name, job.arguments) == (
        "send_password_reset_email",
        {"email": "someone@example.com"},
    )


@pytest.mark.parametrize("body", [{}, {"email": "not an address"}, {"email": "a@b.c", "x": 1}])
async def test_a_bad_request_body_is_a_422_problem(
    client: AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post(RESET, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_retried_job_replaces_its_token(
    session: AsyncSession, passwords: Passwords, user: User
) -> None:
    job_id = uuid.uuid4()

    async def issue() -> str | None:
        purpose = AccountTokenPurpose.PASSWORD_RESET
        return await issue_account_token(
            session, token_id=job_id, user=user, purpose=purpose, lifetime=HOUR
        )

    first, second = await issue(), await issue()
    assert first is not None
    assert second is not None
    assert first != second
    count = await session.scalar(select(func.count()).select_from(AccountToken))
    assert count == 1
    await session.commit()  # as the job commits, before any request presents the token
    with pytest.raises(InvalidResetToken):
        await service.reset_password(
            session, passwords=passwords, token=first, new_password="the new password"
        )
    await service.reset_password(
        session, passwords=passwords, token=second, new_password="the new password"
    )
    # Once used, a later retry of that job has nothing to mail.
    assert await issue() is None


async def _verification_token(session: AsyncSession, user: User) -> str:
    """A verification token for `user`, committed as its job commits it."""
    purpose = AccountTokenPurpose.EMAIL_VERIFICATION
    token = await issue_account_token(
        session, token_id=uuid.uuid4(), user=user, purpose=purpose, lifetime=HOUR
    )
    assert token is not None
    await session.commit()
    return token


async def test_a_deactivated_account_cannot_use_its_token(
    session: AsyncSession, user: User
) -> None:
    token = await _verification_token(session, user)
    user.is_active = False
    await session.commit()
    with pytest.raises(InvalidVerificationToken):
        await service.verify_email(session, token=token)


async def test_a_token_of_one_purpose_is_not_one_of_the_other(
    session: AsyncSession, passwords: Passwords, user: User
) -> None:
    token = await _verification_token(session, user)
    with pytest.raises(InvalidResetToken):
        await service.reset_password(
            session, passwords=passwords, token=token, new_password="the new password"
        )
