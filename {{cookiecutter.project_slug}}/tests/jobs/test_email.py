"""Email: templates, the message, the SMTP and log backends, and their settings."""

import logging
import ssl
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
import trustme
from pydantic import NameEmail, ValidationError

from app.core.config import EmailBackend, Settings, describe_error
from app.email import service as email
from tests.mail import Credentials, smtp_server
from tests.servers import free_port


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def _message(settings: Settings, name: str = "Ada <b>&</b> co") -> EmailMessage:
    return email.build_message(
        settings,
        to="ada@example.com",
        template="welcome",
        values={"name": name, "email": "ada@example.com", "service": "Our Service"},
        message_id="job-1234",
    )


def test_a_message_has_a_plain_text_and_an_html_body_from_the_templates() -> None:
    settings = _settings(EMAIL_FROM=NameEmail("Our Service", "hello@example.org"))
    message = _message(settings)
    assert message["Subject"] == "Welcome to Our Service"
    assert message["From"] == "Our Service <hello@example.org>"
    assert message["Message-ID"] == "<job-1234@example.org>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "Hello Ada <b>&</b> co," in text.get_content()
    # Every value is escaped in the HTML body: a name cannot add markup.
    assert "Hello Ada &lt;b&gt;&amp;&lt;/b&gt; co," in html.get_content()
    assert "<strong>ada@example.com</strong>" in html.get_content()


def test_a_template_value_left_out_fails_instead_of_sending_a_gap() -> None:
    with pytest.raises(KeyError, match="service"):
        email.render("welcome", {"name": "Ada", "email": "ada@example.com"})


async def test_smtp_delivers_the_message_to_a_real_server() -> None:
    with smtp_server() as server:
        settings = _settings(**server.settings)
        await email.send(settings, _message(settings))
        (received,) = await server.inbox.until(1)
    assert received.recipients == ("ada@example.com",)
    assert received.message["Subject"] == "Welcome to Our Service"
    assert received.message_id == "<job-1234@example.com>"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusting(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.LeafCert:
    """A certificate for "localhost" from a CA that this process's TLS then trusts (as a
    mail server's certificate from a public CA is trusted): OpenSSL reads SSL_CERT_FILE."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return ca.issue_cert("localhost")


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_smtp_over_tls_signs_in_and_delivers(
    trusting: trustme.LeafCert, security: str
) -> None:
    login = Credentials("mailer", "s3cret")
    with smtp_server(security=security, certificate=trusting, credentials=login) as server:
        settings = _settings(**server.settings, SMTP_USERNAME="mailer", SMTP_PASSWORD="s3cret")
        await email.send(settings, _message(settings))
        (received,) = await server.inbox.until(1)
    assert received.recipients == ("ada@example.com",)
    assert login.tried == [("mailer", "s3cret")]


async def test_a_wrong_smtp_password_fails_and_sends_nothing(trusting: trustme.LeafCert) -> None:
    login = Credentials("mailer", "s3cret")
    with smtp_server(security="starttls", certificate=trusting, credentials=login) as server:
        settings = _settings(**server.settings, SMTP_USERNAME="mailer", SMTP_PASSWORD="guess")
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await email.send(settings, _message(settings))
    assert server.inbox.arrived == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_certificate_nobody_vouches_for_is_refused(ca: trustme.CA, security: str) -> None:
    """Without the test CA trusted, the server's certificate is a stranger's: the try fails
    (and its job is retried) before any credential or message is sent."""
    login = Credentials("mailer", "s3cret")
    certificate = ca.issue_cert("localhost")
    with smtp_server(security=security, certificate=certificate, credentials=login) as server:
        settings = _settings(**server.settings, SMTP_USERNAME="mailer", SMTP_PASSWORD="s3cret")
        failed = (aiosmtplib.SMTPException, ssl.SSLError)
        with pytest.raises(failed, match="CERTIFICATE_VERIFY_FAILED"):
            await email.send(settings, _message(settings))
    assert (login.tried, server.inbox.arrived) == ([], [])


async def test_credentials_never_cross_in_plain_text(trusting: trustme.LeafCert) -> None:
    """SMTP_TLS=none to a server that offers AUTH only after STARTTLS: the send fails, and
    the password was never sent."""
    login = Credentials("mailer", "s3cret")
    with smtp_server(security="starttls", certificate=trusting, credentials=login) as server:
        settings = _settings(
            **{**server.settings, "SMTP_TLS": "none"},
            SMTP_USERNAME="mailer",
            SMTP_PASSWORD="s3cret",
        )
        with pytest.raises(aiosmtplib.SMTPException):
            await email.send(settings, _message(settings))
    assert (login.tried, server.inbox.arrived) == ([], [])


async def test_an_unreachable_smtp_server_raises_so_the_job_is_retried() -> None:
    settings = _settings(
        EMAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(), SMTP_TLS="none"
    )
    with pytest.raises(aiosmtplib.SMTPException):
        await email.send(settings, _message(settings))


async def test_the_log_backend_writes_the_message_to_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(EMAIL_BACKEND="log")
    assert settings.EMAIL_BACKEND is EmailBackend.LOG
    with caplog.at_level(logging.INFO, logger="app.email.service"):
        await email.send(settings, _message(settings))
    (record,) = [r for r in caplog.records if r.name == "app.email.service"]
    assert record.to == "ada@example.com"  # type: ignore[attr-defined]
    assert "Hello Ada" in record.text  # type: ignore[attr-defined]


async def test_in_production_the_log_backend_leaves_the_body_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(
        ENVIRONMENT="production",
        SECRET_KEY="s" * 40,
        ALLOWED_HOSTS="api.test",
        EMAIL_BACKEND="log",
    )
    with caplog.at_level(logging.INFO, logger="app.email.service"):
        await email.send(settings, _message(settings))
    (record,) = [r for r in caplog.records if r.name == "app.email.service"]
    assert not hasattr(record, "text")


def _error(**values: object) -> str:
    with pytest.raises(ValidationError) as raised:
        _settings(**values)
    return describe_error(raised.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"EMAIL_BACKEND": "smtp"},
            "invalid configuration: SMTP_HOST must be set when EMAIL_BACKEND is smtp",
        ),
        (
            {"SMTP_USERNAME": "mailer"},
            "invalid configuration: SMTP_USERNAME and SMTP_PASSWORD are set together, or neither",
        ),
        (
            {"SMTP_HOST": "smtp://mail.example.com"},
            "invalid configuration: SMTP_HOST: 'smtp://mail.example.com' is not a host name or "
            "address such as smtp.example.com",
        ),
        (
            {"EMAIL_BACKEND": "carrier-pigeon"},
            "invalid configuration: EMAIL_BACKEND: Input should be 'smtp' or 'log'",
        ),
        (
            {"SMTP_TLS": "ssl"},
            "invalid configuration: SMTP_TLS: Input should be 'starttls', 'tls' or 'none'",
        ),
        (
            {"JOBS_TIMEOUT_SECONDS": 60, "JOBS_LEASE_SECONDS": 60},
            "invalid configuration: JOBS_TIMEOUT_SECONDS must be below JOBS_LEASE_SECONDS, so "
            "that no job is still running when its lease lets another runner claim it",
        ),
    ],
)
def test_bad_email_and_job_settings_stop_with_one_line(
    values: dict[str, object], message: str
) -> None:
    assert _error(**values) == message


def test_the_smtp_password_is_a_secret() -> None:
    settings = _settings(SMTP_HOST="mail.example.com", SMTP_USERNAME="u", SMTP_PASSWORD="hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in _error(SMTP_USERNAME="u", SMTP_PASSWORD="hunter2", SMTP_PORT=0)
