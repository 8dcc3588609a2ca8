from app.core.errors import Conflict, NotFound


class JobNotFound(NotFound):
    code = "job_not_found"
    message = "The job does not exist (a job that succeeded is deleted)."


class JobNotDead(Conflict):
    code = "job_not_dead"
    message = "Only a dead job can be retried; this one is still pending or running."


class UnknownJob(LookupError):
    """A stored job names no registered function (renamed, or enqueued by a newer release)."""
