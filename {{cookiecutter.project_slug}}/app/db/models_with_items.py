"""Every model, imported in one place so Alembic and the mappers see the whole schema."""

from app.auth.models import AccountToken, RefreshToken
from app.db.base import Base
from app.items.models import Item
from app.jobs.models import Job
from app.users.models import User

__all__ = [
    "AccountToken",
    "Base",
    "Item",
    "Job",
    "RefreshToken",
    "User",
]
