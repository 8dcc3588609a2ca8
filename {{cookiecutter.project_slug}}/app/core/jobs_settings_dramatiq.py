"""Settings of the Dramatiq engine: RabbitMQ carries jobs to worker processes (`make worker`).

`Settings` (app/core/config.py) takes these with the rest; app/jobs/broker.py reads them.
"""

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from app.core.project import PROJECT_SLUG

# RabbitMQ's own guest account, which it accepts from the local machine only.
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class JobsEngineSettings(BaseSettings):
    # "dramatiq": the service publishes jobs to RabbitMQ and `make worker` processes run them.
    # "embedded": the service's own processes run them, as in a project without Dramatiq (for
    # a laptop without RabbitMQ; the tests use it, except those of the Dramatiq engine).
    JOBS_ENGINE: Literal["dramatiq", "embedded"] = "dramatiq"
    # amqp:// or amqps:// (TLS), with the credentials and the vhost (%2F is "/").
    JOBS_BROKER_URL: SecretStr = SecretStr(DEFAULT_BROKER_URL)
    # The RabbitMQ queue the jobs go to: services (or test runs) sharing a broker keep theirs
    # apart. Dramatiq adds a delay queue (.DQ) and a dead-letter queue (.XQ) beside it.
    JOBS_QUEUE: str = Field(
        default=f"{PROJECT_SLUG}.jobs", min_length=1, max_length=200, pattern=r"^[\w.-]+$"
    )
    # How long a job handed to RabbitMQ may wait there for a worker before the relay hands it
    # over again (it covers a message the broker lost). Above JOBS_LEASE_SECONDS; above the
    # longest backlog you expect, or jobs waiting in a long queue are published twice.
    JOBS_QUEUE_LEASE_SECONDS: float = Field(default=3600, gt=0, le=7 * 86_400)

    @field_validator("JOBS_BROKER_URL")
    @classmethod
    def _check_broker_url(cls, url: SecretStr) -> SecretStr:
        parts = urlsplit(url.get_secret_value())
        message = "must be a RabbitMQ URL such as amqp://user:password@127.0.0.1:5672/%2F"
        if parts.scheme not in {"amqp", "amqps"} or not parts.hostname:
            raise ValueError(message)
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number in range
        except ValueError:
            raise ValueError(message) from None
        return url

    @model_validator(mode="after")
    def _check_queue_lease(self) -> Self:
        lease: float = getattr(self, "JOBS_LEASE_SECONDS", 0)
        if lease >= self.JOBS_QUEUE_LEASE_SECONDS:
            raise ValueError(
                "JOBS_QUEUE_LEASE_SECONDS must be above JOBS_LEASE_SECONDS: a job waiting in "
                "RabbitMQ is not handed over again before a worker could have run it"
            )
        return self
