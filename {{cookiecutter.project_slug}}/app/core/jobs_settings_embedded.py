"""Settings of the jobs engine: none of its own, as this project runs its jobs in its own
processes (the embedded runner, app/jobs/runner.py), with the JOBS_* settings of
app/core/config.py.

`Settings` (app/core/config.py) takes these with the rest; the Dramatiq variant of this project
adds the RabbitMQ URL, the queue's name and the relay's lease here.
"""

from typing import Literal

from pydantic_settings import BaseSettings


class JobsEngineSettings(BaseSettings):
    # Where jobs run: here, always in the service's own processes.
    JOBS_ENGINE: Literal["embedded"] = "embedded"
