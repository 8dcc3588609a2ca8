"""Email: templates, the message, the SMTP and log backends, and their settings."""

import logging
from email.message import EmailMessage

import aiosmtplib
import pytest
from pydantic import NameEmail, ValidationError

from app.core.config import EmailBackend, Settings, describe_error
from app.email import service as email
from tests.mail import smtp_server
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
