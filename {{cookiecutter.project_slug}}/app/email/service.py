"""Email: messages built from templates, sent by the backend the settings name.

Only jobs send email (app/users/jobs.py): a request never waits on an SMTP server, and a
message is sent only for a transaction that committed.

Templates are `string.Template` files in app/email/templates/, `<name>.subject.txt`,
`<name>.txt` and `<name>.html`: the bodies only substitute values, so they need no template
language (nor its dependency). Every value is HTML-escaped in the HTML body, and a template
that names a value it is not given fails loudly (`KeyError`) instead of sending a gap.
"""

import html
import logging
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from functools import cache
from importlib import resources
from string import Template

import aiosmtplib

from app.core.config import EmailBackend, Environment, Settings, SmtpSecurity

logger = logging.getLogger(__name__)

_TEMPLATES = resources.files("app.email").joinpath("templates")


@cache
def _template(file_name: str) -> Template:
    return Template(_TEMPLATES.joinpath(file_name).read_text("utf-8"))


def render(name: str, values: dict[str, str]) -> tuple[str, str, str]:
    """The subject, plain-text body and HTML body of template `name` with `values`."""
    subject = _template(f"{name}.subject.txt").substitute(values).strip()
    text = _template(f"{name}.txt").substitute(values)
    escaped = {key: html.escape(value) for key, value in values.items()}
    html_body = _template(f"{name}.html").substitute(escaped)
    return subject, text, html_body


def build_message(
    settings: Settings,
    *,
    to: str,
    template: str,
    values: dict[str, str],
    message_id: str,
) -> EmailMessage:
    """A multipart/alternative message (plain text, then HTML). `message_id` is its
    Message-ID's local part: a job passes its own id, so a message sent twice by a retried
    job carries the same Message-ID and the copy can be recognised."""
    subject, text, html_body = render(template, values)
    sender = settings.EMAIL_FROM
    message = EmailMessage()
    message["From"] = formataddr((sender.name, sender.email))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{message_id}@{sender.email.rpartition('@')[2]}>"
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


async def send(settings: Settings, message: EmailMessage) -> None:
    """Send through SMTP, or write to the log (EMAIL_BACKEND). SMTP errors propagate: the
    job fails and is retried."""
    if settings.EMAIL_BACKEND is EmailBackend.LOG:
        details = {
            "to": message["To"],
            "subject": message["Subject"],
            "message_id": message["Message-ID"],
        }
        if settings.ENVIRONMENT is not Environment.PRODUCTION:
            body = message.get_body(preferencelist=("plain",))
            details["text"] = body.get_content() if body is not None else ""
        logger.info("email: written to the log, not sent (EMAIL_BACKEND=log)", extra=details)
        return
    password = settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None
    await aiosmtplib.send(
        message,
        hostname=settings.SMTP_HOST,
        port=settings.SMTP_PORT,
        username=settings.SMTP_USERNAME,
        password=password,
        use_tls=settings.SMTP_TLS is SmtpSecurity.TLS,
        start_tls=settings.SMTP_TLS is SmtpSecurity.STARTTLS,
        timeout=settings.SMTP_TIMEOUT_SECONDS,
    )
    logger.info("email: sent", extra={"message_id": message["Message-ID"]})
