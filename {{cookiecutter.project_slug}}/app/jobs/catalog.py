"""Every module with job functions, imported in one place so every runner knows every job
(as app/db/models.py does for the models). Add a line for each new module of jobs."""

from app.auth import jobs as auth_jobs
from app.users import jobs as users_jobs

__all__ = ["auth_jobs", "users_jobs"]
