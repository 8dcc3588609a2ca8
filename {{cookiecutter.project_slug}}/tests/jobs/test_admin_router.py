"""/jobs for admins: the queue and its dead jobs over HTTP, and a retry (the rows live in the
test's rolled-back transaction, as the other router tests' do)."""

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.jobs.models import Job, JobStatus

JOBS = "/api/v1/jobs"
# A job id no job has (a constant: xdist's workers must collect the same test ids).
NO_JOB = "00000000-0000-4000-8000-000000000000"


async def _job(session: AsyncSession, status: JobStatus, **values: object) -> Job:
    job = Job(
        name="send_welcome_email",
        arguments={"user_id": str(uuid.uuid4())},
        status=status,
        run_at=utcnow(),
        **values,
    )
    session.add(job)
    await session.commit()
    return job


async def test_an_admin_sees_the_dead_jobs_with_their_error_and_retries_one(
    client: AsyncClient, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    dead = await _job(session, JobStatus.DEAD, attempts=5, last_error="SMTPConnectError: down")
    pending = await _job(session, JobStatus.PENDING)

    listed = await client.get(JOBS, params={"status": "dead"}, headers=admin_headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert (page["total"], [job["id"] for job in page["items"]]) == (1, [str(dead.id)])
    assert page["items"][0]["last_error"] == "SMTPConnectError: down"
    everything = (await client.get(JOBS, headers=admin_headers)).json()
    assert {job["id"] for job in everything["items"]} == {str(dead.id), str(pending.id)}

    retried = await client.post(f"{JOBS}/{dead.id}/retry", headers=admin_headers)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    one = await client.get(f"{JOBS}/{dead.id}", headers=admin_headers)
    assert one.json()["status"] == "pending"
    again = await client.post(f"{JOBS}/{dead.id}/retry", headers=admin_headers)
    assert (again.status_code, again.json()["code"]) == (409, "job_not_dead")
    assert again.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", JOBS), ("GET", f"{JOBS}/{NO_JOB}"), ("POST", f"{JOBS}/{NO_JOB}/retry")],
)
async def test_the_job_routes_are_for_admins_only(
    client: AsyncClient, user_headers: dict[str, str], method: str, path: str
) -> None:
    response = await client.request(method, path, headers=user_headers)
    assert (response.status_code, response.json()["code"]) == (403, "admin_required")
    anonymous = await client.request(method, path)
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", f"{JOBS}/{NO_JOB}", 404, "job_not_found"),
        ("POST", f"{JOBS}/{NO_JOB}/retry", 404, "job_not_found"),
        ("GET", f"{JOBS}/not-a-uuid", 422, "validation_error"),
        ("GET", f"{JOBS}?status=finished", 422, "validation_error"),
        ("GET", f"{JOBS}?limit=1000", 422, "validation_error"),
    ],
)
async def test_bad_job_requests_are_problems(
    client: AsyncClient,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    status: int,
    code: str,
) -> None:
    response = await client.request(method, path, headers=admin_headers)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.headers["content-type"] == "application/problem+json"
