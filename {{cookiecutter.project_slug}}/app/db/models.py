"""Every model, imported in one place so Alembic and the mappers see the whole schema."""

from app.auth.models import RefreshToken
from app.db.base import Base
{%- if cookiecutter.include_example_resource %}
from app.items.models import Item
{%- endif %}
from app.jobs.models import Job
from app.users.models import User

__all__ = [
    "Base",
{%- if cookiecutter.include_example_resource %}
    "Item",
{%- endif %}
    "Job",
    "RefreshToken",
    "User",
]
