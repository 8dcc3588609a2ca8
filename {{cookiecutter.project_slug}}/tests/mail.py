"""A real SMTP server (aiosmtpd) on a free loopback port, for the tests of email and jobs.

It runs in a thread of its own (aiosmtpd's `Controller`), so a test's event loop, or a served
app in another process, talks to it over TCP like to any mail server. `Inbox` keeps what it
was sent; it can hold a message mid-DATA (the client waits for the answer it never gets) to
catch a job in the middle of its work.
"""

import asyncio
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.servers import free_port

# How long a test waits for mail that should come.
MAIL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Received:
    recipients: tuple[str, ...]
    message: EmailMessage
    at: float  # time.monotonic() when the server accepted it

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class Inbox:
    """aiosmtpd's handler: accepts every message (250), or holds it while `hold` is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delivered: list[Received] = []
        self._arrived: list[Received] = []
        self.hold = threading.Event()
        self._release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(tuple(envelope.rcpt_tos), message, time.monotonic())
        with self._lock:
            self._arrived.append(received)
        if self.hold.is_set():
            # The sender waits for an answer; it gets none until released, and then a refusal.
            while not self._release.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test
                await asyncio.sleep(0.01)
            return "451 held by the test, not accepted"
        with self._lock:
            self._delivered.append(received)
        return "250 OK"

    def release_held(self) -> None:
        self._release.set()

    @property
    def delivered(self) -> list[Received]:
        """The messages accepted (answered 250)."""
        with self._lock:
            return list(self._delivered)

    @property
    def arrived(self) -> list[Received]:
        """Every message whose DATA came in, accepted or held."""
        with self._lock:
            return list(self._arrived)

    def _enough(self, count: int, arrived: bool, deadline: float) -> list[Received] | None:
        messages = self.arrived if arrived else self.delivered
        if len(messages) >= count:
            return messages
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(messages)} messages came, not {count}")
        return None

    def wait_for(
        self, count: int, *, arrived: bool = False, within: float = MAIL_TIMEOUT
    ) -> list[Received]:
        """At least `count` messages (accepted, or arrived), else AssertionError after
        `within` seconds. Blocks: for tests whose jobs run in another process."""
        deadline = time.monotonic() + within
        while (messages := self._enough(count, arrived, deadline)) is None:
            time.sleep(0.01)
        return messages

    async def until(
        self, count: int, *, arrived: bool = False, within: float = MAIL_TIMEOUT
    ) -> list[Received]:
        """`wait_for` for tests whose runner shares their event loop."""
        deadline = time.monotonic() + within
        while (messages := self._enough(count, arrived, deadline)) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return messages


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    inbox: Inbox
    security: str = "none"  # SMTP_TLS: none, starttls or tls

    @property
    def settings(self) -> dict[str, str]:
        """The settings that send to this server."""
        return {
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": self.host,
            "SMTP_PORT": str(self.port),
            "SMTP_TLS": self.security,
        }


class Credentials:
    """aiosmtpd's authenticator: accepts one username and password, records every try."""

    def __init__(self, username: str, password: str) -> None:
        self.expected = (username, password)
        self.tried: list[tuple[str, str]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        tried = (auth_data.login.decode(), auth_data.password.decode())
        self.tried.append(tried)
        # handled=False: the server answers a failure itself (535).
        return AuthResult(success=tried == self.expected, handled=False)


@contextmanager
def smtp_server(
    port: int | None = None,
    *,
    security: str = "none",
    certificate: trustme.LeafCert | None = None,
    credentials: Credentials | None = None,
) -> Iterator[SmtpServer]:
    """A server on `port`, else on a free one; stopped afterwards.

    With `security` "starttls" it offers STARTTLS and refuses mail before it; with "tls" it
    speaks TLS from the first byte. Either presents `certificate`, for "localhost". With
    `credentials` it requires AUTH, which it offers only over TLS."""
    inbox = Inbox()
    port = port or free_port()
    options: dict[str, Any] = {}
    host = "127.0.0.1"
    if security != "none":
        assert certificate is not None, "TLS needs a certificate"
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        host = "localhost"  # the name the certificate is for, as a client must ask for it
        if security == "starttls":
            options.update(tls_context=context, require_starttls=True)
        else:
            # aiosmtpd counts only a STARTTLS upgrade as TLS when it decides to offer AUTH, and
            # warns (at every connection, in its thread) when that check is off. Here every
            # connection is TLS from its first byte, so the check is off and its warning muted
            # (for the test: pytest restores the filters after each).
            options.update(ssl_context=context, server_hostname="localhost", auth_require_tls=False)
            warnings.filterwarnings(
                "ignore", "Requiring AUTH while not requiring TLS", UserWarning, "aiosmtpd"
            )
    if credentials is not None:
        options.update(authenticator=credentials, auth_required=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer(host, port, inbox, security)
    finally:
        inbox.release_held()
        controller.stop()
