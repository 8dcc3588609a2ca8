"""Jobs of the users domain: the welcome email, the plain example of a job a service
enqueues (app/auth/service.py, `register`)."""

import logging
import uuid

from app.email import service as email
from app.jobs.registry import JobContext, job
from app.users.models import User

logger = logging.getLogger(__name__)


@job("send_welcome_email")
async def send_welcome_email(context: JobContext, *, user_id: uuid.UUID) -> None:
    """Mail the new account a welcome. An account deleted or deactivated meanwhile gets none.

    Idempotent by the job's id as far as SMTP allows: the Message-ID is made from it, so if a
    runner dies after the server accepted the message and before the job was marked done, the
    copy the retry sends carries the same Message-ID, by which a mail store or a reader can
    tell it is the same message."""
    async with context.read_sessionmaker() as session:
        user = await session.get(User, user_id)
    if user is None or not user.is_active:
        logger.info("email: welcome skipped, the account is gone or inactive")
        return
    settings = context.settings
    message = email.build_message(
        settings,
        to=user.email,
        template="welcome",
        values={
            "name": user.full_name or user.email,
            "email": user.email,
            "service": settings.project_name,
        },
        message_id=f"job-{context.id}",
    )
    await email.send(settings, message)
