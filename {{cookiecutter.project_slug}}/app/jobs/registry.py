"""Job functions by name, each with its arguments' pydantic model.

A job function is an `async def` whose first parameter is the `JobContext` and whose other
parameters are keyword-only and typed; `@job("name")` registers it:

    @job("send_welcome_email")
    async def send_welcome_email(context: JobContext, *, user_id: uuid.UUID) -> None: ...

`enqueue(session, send_welcome_email, user_id=user.id)` (app/jobs/service.py) is checked by
mypy against that signature, and the arguments are validated by pydantic twice: when enqueued
(stored as JSON) and when run (read back into their types). The name is what the queue
stores: keep it when you rename the function, or pending jobs find no function to run.
"""

import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, cast, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running job gets besides its arguments."""

    # The job's id: the key that makes a job idempotent (README, "Background jobs").
    id: uuid.UUID
    name: str
    # 1 on the first try; more after a failure, or after a runner stopped mid-job.
    attempt: int
    request_id: str | None
    settings: Settings
    # Sessions of the job's own: one transaction each for writes, none for reads (as for a
    # request's GET). A job holds no transaction of the runner's while it runs.
    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]


JobCallable = Callable[Concatenate[JobContext, P], Awaitable[None]]


class JobFunction(Generic[P]):
    """A registered job: its name, its function and the model of its arguments."""

    def __init__(self, name: str, function: JobCallable[P]) -> None:
        self.name = name
        self.function = function
        self.arguments = _arguments_model(name, function)

    def dump(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """The arguments validated and as JSON, as the queue stores them."""
        if args:
            raise TypeError(f"job {self.name!r} takes keyword arguments only")
        dumped: dict[str, Any] = self.arguments.model_validate(kwargs).model_dump(mode="json")
        return dumped

    async def run(self, context: JobContext, arguments: dict[str, Any]) -> None:
        """Run with the stored arguments, validated back into their types."""
        values = self.arguments.model_validate(arguments)
        fields = {name: getattr(values, name) for name in type(values).model_fields}
        await cast(Callable[..., Awaitable[None]], self.function)(context, **fields)


def _arguments_model(name: str, function: Callable[..., Any]) -> type[BaseModel]:
    if not inspect.iscoroutinefunction(function):
        raise TypeError(f"job {name!r} must be an async def")
    hints = get_type_hints(function)
    parameters = list(inspect.signature(function).parameters.values())[1:]
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(
                f"job {name!r}: {parameter.name!r} must be keyword-only (put `*,` after the "
                "context), so that the stored arguments are named"
            )
        if parameter.name not in hints:
            raise TypeError(f"job {name!r}: {parameter.name!r} needs a type annotation")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    model: type[BaseModel] = create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="forbid", frozen=True), **fields
    )
    return model


_JOBS: dict[str, JobFunction[Any]] = {}


def job(name: str) -> Callable[[JobCallable[P]], JobFunction[P]]:
    """Register a job function under `name` (unique; stored with every job)."""

    def register(function: JobCallable[P]) -> JobFunction[P]:
        if name in _JOBS:
            raise ValueError(f"a job named {name!r} is already registered")
        registered = JobFunction(name, function)
        _JOBS[name] = registered
        return registered

    return register


def get_job_function(name: str) -> JobFunction[Any] | None:
    return _JOBS.get(name)
