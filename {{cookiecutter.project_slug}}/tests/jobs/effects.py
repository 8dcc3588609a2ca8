"""A job for the tests of the Dramatiq engine, whose effect is idempotent by the job's id.

Every run appends a line to `runs.log` in its folder (key, job id, attempt, process id); the
effect is a file named after the job's id, created at most once (O_EXCL), so a job run twice
has its effect once, as the README asks of every job. A file `fail-<key>` in the folder makes
the job fail until it is removed.

`python -m tests.jobs.effects` is the `worker` command with this job registered: the tests
start their worker processes with it.
"""

import asyncio
import os
from pathlib import Path

from app.jobs.registry import JobContext, job


def _run(folder: Path, key: str, context: JobContext) -> None:
    with (folder / "runs.log").open("a", encoding="utf-8") as log:
        log.write(f"{key} {context.id} {context.attempt} {os.getpid()}\n")


def _fails(folder: Path, key: str) -> bool:
    return (folder / f"fail-{key}").exists()


def _have_effect(folder: Path, key: str, context: JobContext) -> None:
    try:
        descriptor = os.open(folder / f"effect-{context.id}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # a run before this one had the effect
    with os.fdopen(descriptor, "w", encoding="utf-8") as effect:
        effect.write(key)


@job("tests.effect")
async def effect(context: JobContext, *, folder: str, key: str, seconds: float = 0.0) -> None:
    where = Path(folder)
    await asyncio.to_thread(_run, where, key, context)
    await asyncio.sleep(seconds)
    if await asyncio.to_thread(_fails, where, key):
        raise RuntimeError(f"{key} is broken")
    await asyncio.to_thread(_have_effect, where, key, context)


def runs(folder: Path) -> list[tuple[str, str, int, int]]:
    """(key, job id, attempt, process id) of every run, in order."""
    path = folder / "runs.log"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split()
    return [
        (lines[i], lines[i + 1], int(lines[i + 2]), int(lines[i + 3]))
        for i in range(0, len(lines), 4)
    ]


def effects(folder: Path) -> dict[str, str]:
    """Job id to key, for every job that had its effect."""
    return {
        path.name.removeprefix("effect-"): path.read_text(encoding="utf-8")
        for path in folder.glob("effect-*")
    }


if __name__ == "__main__":
    from app.jobs.worker import main

    main()
