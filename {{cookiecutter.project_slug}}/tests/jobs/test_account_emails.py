"""Password reset and email verification, end to end: the app with its lifespan (so its
embedded runner), a real database with real commits, and a real SMTP server that receives
the tokens. Each token used here comes out of a message the server received."""

import asyncio
import hashlib
import re

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select

from app.auth.models import AccountToken, AccountTokenPurpose
from app.users.models import User
from tests import factories
from tests.jobs.conftest import Queue, app_client, running_app
from tests.mail import Received, SmtpServer

API = "/api/v1"
RESET = f"{API}/auth/password-reset"
CONFIRM = f"{API}/auth/password-reset/confirm"
VERIFY = f"{API}/auth/verify-email"
RESEND = f"{API}/auth/verify-email/resend"
ACCEPTED = {
    "detail": "If an account can receive this email, it is on its way. It may take a few minutes."
}
NEW_PASSWORD = "a brand new passphrase"
_TOKEN = re.compile(r"(?:#token=|\): )([A-Za-z0-9_-]{43})\s*$", re.MULTILINE)


def token_in(message: Received) -> str:
    """The token of an account email, from its plain-text body."""
    body = message.message.get_body(preferencelist=("plain",))
    assert body is not None
    found = _TOKEN.search(body.get_content())
    assert found is not None, body.get_content()
    return found.group(1)


async def _account(queue: Queue, email: str, **values: object) -> User:
    async with queue.sessionmaker() as session:
        user = await factories.create_user(session, email=email)
        for name, value in values.items():
            setattr(user, name, value)
        await session.commit()
        return user


async def _stored(queue: Queue, email: str) -> User:
    async with queue.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.email == email))
        assert user is not None
        return user


async def _tokens(queue: Queue) -> list[AccountToken]:
    async with queue.sessionmaker() as session:
        return list(await session.scalars(select(AccountToken).order_by(AccountToken.issued_at)))


async def _login(client: AsyncClient, email: str, password: str) -> Response:
    return await client.post(f"{API}/auth/login", data={"username": email, "password": password})


def _problem(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_a_password_reset_from_request_to_new_password(
    queue: Queue, smtp: SmtpServer
) -> None:
    await _account(queue, "forgot@example.com")
    async with running_app(queue, smtp) as app, app_client(app) as client:
        signed_in = await _login(client, "forgot@example.com", factories.DEFAULT_PASSWORD)
        old_access = signed_in.json()["access_token"]
        old_refresh = signed_in.json()["refresh_token"]

        asked = await client.post(RESET, json={"email": "Forgot@Example.com"})
        assert (asked.status_code, asked.json()) == (202, ACCEPTED)
        (message,) = await smtp.inbox.until(1)
        await queue.until_empty()
        assert message.recipients == ("forgot@example.com",)
        assert message.message["Subject"].startswith("Reset your ")
        token = token_in(message)
        # Only the digest is stored, for the address it was mailed to.
        (stored,) = await _tokens(queue)
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr(vars(stored))
        assert (stored.purpose, stored.email) == (
            AccountTokenPurpose.PASSWORD_RESET,
            "forgot@example.com",
        )

        done = await client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
        assert done.status_code == 204, done.text

        # The new password works, the old one no longer does, and every login has ended.
        assert (await _login(client, "forgot@example.com", NEW_PASSWORD)).status_code == 200
        refused = await _login(client, "forgot@example.com", factories.DEFAULT_PASSWORD)
        _problem(refused, 401, "invalid_credentials")
        me = await client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {old_access}"})
        _problem(me, 401, "invalid_token")
        refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": old_refresh})
        _problem(refreshed, 401, "invalid_refresh_token")
        # Spent: the same token again is refused, and the password stays the new one.
        again = await client.post(CONFIRM, json={"token": token, "new_password": "another one!"})
        _problem(again, 400, "invalid_reset_token")
    user = await _stored(queue, "forgot@example.com")
    assert user.email_verified_at is not None  # receiving the token proved the address


async def test_an_unknown_address_gets_the_same_answer_and_no_email(
    queue: Queue, smtp: SmtpServer
) -> None:
    await _account(queue, "known@example.com")
    await _account(queue, "inactive@example.com", is_active=False)
    async with running_app(queue, smtp) as app, app_client(app) as client:
        answers = [
            await client.post(RESET, json={"email": email})
            for email in ("nobody@example.com", "inactive@example.com", "known@example.com")
        ]
        await smtp.inbox.until(1)
        await queue.until_empty()
    assert {(a.status_code, a.text) for a in answers} == {(202, answers[0].text)}
    assert [m.recipients for m in smtp.inbox.arrived] == [("known@example.com",)]


@pytest.mark.parametrize(
    "forged",
    [
        "x" * 43,
        "not a token at all",
        "A" * 256,
    ],
)
async def test_a_forged_token_is_refused(queue: Queue, smtp: SmtpServer, forged: str) -> None:
    async with running_app(queue, smtp) as app, app_client(app) as client:
        confirm = await client.post(CONFIRM, json={"token": forged, "new_password": NEW_PASSWORD})
        verify = await client.post(VERIFY, json={"token": forged})
    _problem(confirm, 400, "invalid_reset_token")
    _problem(verify, 400, "invalid_verification_token")


async def test_an_expired_token_is_refused(queue: Queue, smtp: SmtpServer) -> None:
    await _account(queue, "slow@example.com")
    minute = {"PASSWORD_RESET_TOKEN_MINUTES": "1"}
    async with running_app(queue, smtp, **minute) as app, app_client(app) as client:
        await client.post(RESET, json={"email": "slow@example.com"})
        (message,) = await smtp.inbox.until(1)
        await queue.until_empty()
        async with queue.sessionmaker() as session:  # a minute later
            (stored,) = await session.scalars(select(AccountToken))
            stored.expires_at = stored.issued_at
            await session.commit()
        late = await client.post(
            CONFIRM, json={"token": token_in(message), "new_password": NEW_PASSWORD}
        )
        _problem(late, 400, "invalid_reset_token")
        still = await _login(client, "slow@example.com", factories.DEFAULT_PASSWORD)
        assert still.status_code == 200


async def test_a_newer_reset_spends_the_older_tokens_and_two_at_once_win_once(
    queue: Queue, smtp: SmtpServer
) -> None:
    await _account(queue, "twice@example.com")
    async with running_app(queue, smtp) as app, app_client(app) as client:
        for _ in range(2):
            await client.post(RESET, json={"email": "twice@example.com"})
        first, second = (token_in(m) for m in await smtp.inbox.until(2))
        await queue.until_empty()
        racing = await asyncio.gather(
            *(
                client.post(CONFIRM, json={"token": second, "new_password": f"{NEW_PASSWORD} {n}"})
                for n in range(2)
            )
        )
        assert sorted(r.status_code for r in racing) == [204, 400]
        # The first email's token was spent with the second's.
        older = await client.post(CONFIRM, json={"token": first, "new_password": NEW_PASSWORD})
        _problem(older, 400, "invalid_reset_token")
        (won,) = (n for n, r in enumerate(racing) if r.status_code == 204)
        assert (
            await _login(client, "twice@example.com", f"{NEW_PASSWORD} {won}")
        ).status_code == 200


async def test_a_token_stops_working_when_the_address_changes(
    queue: Queue, smtp: SmtpServer
) -> None:
    user = await _account(queue, "moving@example.com")
    async with running_app(queue, smtp) as app, app_client(app) as client:
        await client.post(RESET, json={"email": "moving@example.com"})
        (message,) = await smtp.inbox.until(1)
        await queue.until_empty()
        async with queue.sessionmaker() as session:
            moved = await session.get(User, user.id)
            assert moved is not None
            moved.email = "moved@example.com"
            await session.commit()
        used = await client.post(
            CONFIRM, json={"token": token_in(message), "new_password": NEW_PASSWORD}
        )
    _problem(used, 400, "invalid_reset_token")


async def test_requests_are_limited_per_client_and_silently_per_recipient(
    queue: Queue, smtp: SmtpServer
) -> None:
    await _account(queue, "popular@example.com")
    limits = {"RATE_LIMIT_EMAIL_REQUESTS": "4/hour", "RATE_LIMIT_EMAILS_PER_RECIPIENT": "2/hour"}
    async with running_app(queue, smtp, **limits) as app, app_client(app) as client:
        answers = [
            await client.post(RESET, json={"email": "popular@example.com"}) for _ in range(4)
        ]
        over = await client.post(RESET, json={"email": "other@example.com"})
        await smtp.inbox.until(2)
        await queue.until_empty()
    # Every answer within the client's limit is the same 202; two emails went out, not four.
    assert {(a.status_code, a.text) for a in answers} == {(202, answers[0].text)}
    assert len(smtp.inbox.arrived) == 2
    _problem(over, 429, "rate_limited")
    assert int(over.headers["Retry-After"]) > 0


async def test_registration_verifies_the_address_then_welcomes(
    queue: Queue, smtp: SmtpServer
) -> None:
    body = {"email": "new@example.com", "password": factories.DEFAULT_PASSWORD}
    settings = {"FRONTEND_URL": "https://app.example.com/"}
    async with running_app(queue, smtp, **settings) as app, app_client(app) as client:
        assert (await client.post(f"{API}/auth/register", json=body)).status_code == 201
        (verification,) = await smtp.inbox.until(1)
        await queue.until_empty()
        text = verification.message.get_body(preferencelist=("plain",))
        assert text is not None
        assert "Open https://app.example.com/verify-email#token=" in text.get_content()
        login = await _login(client, "new@example.com", factories.DEFAULT_PASSWORD)
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (await client.get(f"{API}/users/me", headers=headers)).json()[
            "email_verified_at"
        ] is None

        token = token_in(verification)
        assert (await client.post(VERIFY, json={"token": token})).status_code == 204
        welcome = (await smtp.inbox.until(2))[1]
        await queue.until_empty()
        me = (await client.get(f"{API}/users/me", headers=headers)).json()
        _problem(
            await client.post(VERIFY, json={"token": token}), 400, "invalid_verification_token"
        )
        # A verified address is sent no more verification emails.
        assert (await client.post(RESEND, json={"email": "new@example.com"})).status_code == 202
        await queue.until_empty()
    assert welcome.message["Subject"].startswith("Welcome to ")
    assert me["email_verified_at"] is not None
    assert len(smtp.inbox.arrived) == 2


async def test_with_verification_required_only_a_verified_account_signs_in(
    queue: Queue, smtp: SmtpServer
) -> None:
    await _account(queue, "strict@example.com")
    strict = {"REQUIRE_VERIFIED_EMAIL": "true"}
    async with running_app(queue, smtp, **strict) as app, app_client(app) as client:
        wrong = await _login(client, "strict@example.com", "not the password")
        unverified = await _login(client, "strict@example.com", factories.DEFAULT_PASSWORD)
        resent = await client.post(RESEND, json={"email": "strict@example.com"})
        assert resent.status_code == 202
        (message,) = await smtp.inbox.until(1)
        verify = await client.post(VERIFY, json={"token": token_in(message)})
        assert verify.status_code == 204
        verified = await _login(client, "strict@example.com", factories.DEFAULT_PASSWORD)
        await queue.until_empty()
    _problem(wrong, 401, "invalid_credentials")  # a wrong password learns nothing more
    _problem(unverified, 403, "email_not_verified")
    assert verified.status_code == 200, verified.text
