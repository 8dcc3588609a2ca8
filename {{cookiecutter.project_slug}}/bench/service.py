"""`make bench`: this service's own requests, served for real, as ratios to a bare FastAPI route.

It starts three uvicorn processes with the same flags, one worker each: `bench.bare:app` (one
route, nothing else), this service (`app.main:app`, in production mode, on a migrated
throw-away database with two users and their items, rate limits raised so they count but do
not refuse; its metrics kept in multiprocess files, as `serve` keeps them) and the same
service with METRICS_ENABLED=false, on the same database. `wrk` drives them in interleaved
rounds and the table gives, per scenario, the median over the rounds of req/s, p50, p99 and
the server's CPU time per request, each also as a ratio to the bare route measured in the
same run; a last line gives what the metrics cost the item GET (the service with them against
the service without them):

    make bench                                  # 5 rounds of 5 s, 16 connections
    python -m bench.service --rounds 3 --seconds 3 --connections 64 --json bench.json

On Linux with two or more cores the servers are pinned to core 0 and wrk to core 1
(`taskset`), so the load generator never takes the server's core. It is a benchmark, not a
test: it asserts nothing about time, only that each scenario answers the status it should.
Needs `wrk` on PATH (Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`).
"""

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db_settings import DATABASE_DRIVER
from tests import PROJECT_DIR, databases
from tests.servers import free_port

API = "/api/v1"
PASSWORD = "bench-password-0123456789"
START_TIMEOUT = 60.0
FLOOD_CONNECTIONS = 8
# Before each scenario, the servers are given up to SETTLE_TIMEOUT seconds to go idle: below
# IDLE_SHARE of a core over SETTLE_SAMPLE seconds.
SETTLE_TIMEOUT, SETTLE_SAMPLE, IDLE_SHARE = 15.0, 0.25, 0.05
# Items the reading user owns: more than one page of the list scenario.
READER_ITEMS = 25


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    path: str
    status: int
    method: str = "GET"
    body: str | None = None
    content_type: str = "application/json"
    token: str | None = None  # "reader", "writer" or a literal bad token
    bare: bool = False
    flood: bool = False
    metrics_off: bool = False  # served by the service with METRICS_ENABLED=false


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float | None  # server CPU time per request
    requests: int
    unexpected: int  # responses whose status class differs from the scenario's
    errors: int  # socket errors and timeouts


@dataclass
class Row:
    scenario: Scenario
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values = [getattr(s, name) for s in self.samples if getattr(s, name) is not None]
        return statistics.median(values) if values else None


def scenarios() -> list[Scenario]:
    bad_token = "eyJhbGciOiJIUzI1NiIsImtpZCI6Im1haW4ifQ.eyJzdWIiOiJ4In0.bm90LWEtc2lnbmF0dXJl"
    return [
        Scenario("bare", "bare FastAPI route (baseline)", "/bare", 200, bare=True),
        Scenario("item_get", "GET item (authenticated)", "/items/{item_id}", 200, token="reader"),
        Scenario(
            "item_get_metrics_off",
            "GET item, metrics off",
            "/items/{item_id}",
            200,
            token="reader",
            metrics_off=True,
        ),
        Scenario("item_list", "GET items, 20 per page", "/items?limit=20", 200, token="reader"),
        Scenario(
            "item_create",
            "POST item",
            "/items",
            201,
            method="POST",
            body='{"title": "benchmark item", "description": "written by make bench"}',
            token="writer",
        ),
        Scenario("users_me", "GET /users/me", "/users/me", 200, token="reader"),
        Scenario("unauthorized", "401: bad token", "/users/me", 401, token=bad_token),
        Scenario(
            "rate_limited",
            "429: over the register limit",
            "/auth/register",
            429,
            method="POST",
            body=json.dumps({"email": "third@example.com", "password": PASSWORD}),
        ),
        Scenario(
            "invalid_body",
            "422: invalid item body",
            "/items",
            422,
            method="POST",
            body='{"title": ""}',
            token="writer",
        ),
        Scenario("live", "GET /health/live, idle", "/health/live", 200),
        Scenario("live_flood", "GET /health/live, login flood", "/health/live", 200, flood=True),
        Scenario(
            "item_get_flood",
            "GET item, login flood",
            "/items/{item_id}",
            200,
            token="reader",
            flood=True,
        ),
    ]


# --- processes ------------------------------------------------------------------------------


def pinned(core: int) -> list[str]:
    """`taskset -c core` where that can work, else nothing (the figures are then unpinned)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(app_path: str, env: dict[str, str], log: Path, probe: str) -> Iterator[tuple[str, int]]:
    """Serve `app_path` with the production flags, one worker; yield its base URL and pid."""
    port = free_port()
    command_line = [
        *pinned(0),
        sys.executable,
        "-m",
        "uvicorn",
        app_path,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--no-proxy-headers",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command_line,
            cwd=PROJECT_DIR,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                httpx.get(base + probe, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"error: {app_path} did not start; its log:\n{log.read_text()}")
                time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def bench_database() -> Iterator[str]:
    """A migrated throw-away database of the kind this service was generated for."""
    reason = databases.unavailable_reason()
    if reason:
        sys.exit(f"error: {reason}")
    url = databases.new_database_url("bench")
    databases.create_database(url)
    try:
        command.upgrade(databases.alembic_config(url), "head")
        yield url
    finally:
        databases.drop_database(url)


# --- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(f"unexpected wrk duration {value!r}")
    return float(match[1]) * _UNITS[match[2]]


def lua_script(folder: Path, name: str, method: str, body: str | None) -> Path:
    """wrk sends GET without a body unless a script says otherwise."""
    path = folder / f"{name}.lua"
    lines = [f"wrk.method = {json.dumps(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk_command(
    url: str, *, seconds: int, connections: int, headers: Sequence[str], script: Path | None
) -> list[str]:
    line = [*pinned(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    line += ["--timeout", "10s"]
    for header in headers:
        line += ["-H", header]
    if script is not None:
        line += ["-s", str(script)]
    return [*line, url]


def parse_wrk(output: str, *, expect_success: bool) -> tuple[float, float, float, int, int, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    p50 = _duration_ms(re.search(r"\s50%\s+(\S+)", output)[1])  # type: ignore[index]
    p99 = _duration_ms(re.search(r"\s99%\s+(\S+)", output)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    found = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    non_2xx = int(found[1]) if found else 0
    unexpected = non_2xx if expect_success else requests - non_2xx
    socket_errors = re.search(r"Socket errors:(.*)", output)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors[1])) if socket_errors else 0
    return rps, p50, p99, requests, unexpected, errors


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Target:
    base: str
    pid: int


def prepare(base: str) -> dict[str, str]:
    """Two users (a reader with items, a writer that creates them) and their tokens."""
    found: dict[str, str] = {}
    with httpx.Client(base_url=base + API, timeout=30) as client:
        for role in ("reader", "writer"):
            email = f"{role}@example.com"
            answer = client.post("/auth/register", json={"email": email, "password": PASSWORD})
            answer.raise_for_status()
            login = client.post("/auth/login", data={"username": email, "password": PASSWORD})
            login.raise_for_status()
            found[role] = login.json()["access_token"]
        reader = {"Authorization": f"Bearer {found['reader']}"}
        for number in range(READER_ITEMS):
            created = client.post("/items", json={"title": f"item {number}"}, headers=reader)
            created.raise_for_status()
            found["item_id"] = created.json()["id"]
    return found


def check_statuses(
    targets: dict[str, Target], chosen: Sequence[Scenario], ctx: dict[str, str]
) -> None:
    """Each scenario answers what it should, before anything is timed."""
    for scenario in chosen:
        url, headers, _ = request_of(scenario, targets, ctx)
        answer = httpx.request(
            scenario.method,
            url,
            headers=dict(header.split(": ", 1) for header in headers),
            content=scenario.body,
            timeout=30,
        )
        if answer.status_code != scenario.status:
            sys.exit(
                f"error: {scenario.name} answered {answer.status_code}, expected "
                f"{scenario.status}: {answer.text[:300]}"
            )


def target_of(scenario: Scenario) -> str:
    if scenario.bare:
        return "bare"
    return "metrics_off" if scenario.metrics_off else "service"


def request_of(
    scenario: Scenario, targets: dict[str, Target], ctx: dict[str, str]
) -> tuple[str, list[str], str]:
    target = target_of(scenario)
    root = targets[target].base + ("" if target == "bare" else API)
    url = root + scenario.path.format(item_id=ctx.get("item_id", ""))
    headers = []
    if scenario.token is not None:
        headers.append(f"Authorization: Bearer {ctx.get(scenario.token, scenario.token)}")
    if scenario.body is not None:
        headers.append(f"Content-Type: {scenario.content_type}")
    return url, headers, root


@contextmanager
def login_flood(base: str, folder: Path, seconds: int) -> Iterator[list[str]]:
    """8 connections logging in with the right password, back to back, at the real hash cost."""
    body = f"username=reader%40example.com&password={PASSWORD}"
    line = wrk_command(
        base + API + "/auth/login",
        seconds=seconds + 2,
        connections=FLOOD_CONNECTIONS,
        headers=["Content-Type: application/x-www-form-urlencoded"],
        script=lua_script(folder, "login", "POST", body),
    )
    flood = subprocess.Popen(line, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs: list[str] = []
    try:
        time.sleep(1.0)  # let the hashing reach its steady state
        yield outputs
    finally:
        out, _ = flood.communicate(timeout=seconds + 60)
        outputs.append(out)


def settle(targets: dict[str, Target]) -> None:
    """Wait (up to SETTLE_TIMEOUT) until no server is busy: a login flood leaves hashes running
    for a while after wrk stops, on the core every server shares, and the next scenario would
    pay for them."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        before = [cpu_seconds(t.pid) for t in targets.values()]
        time.sleep(SETTLE_SAMPLE)
        after = [cpu_seconds(t.pid) for t in targets.values()]
        pairs = zip(before, after, strict=True)
        busy = sum(end - start for start, end in pairs if start is not None and end is not None)
        if busy < SETTLE_SAMPLE * IDLE_SHARE:
            return


def run_one(
    scenario: Scenario,
    targets: dict[str, Target],
    ctx: dict[str, str],
    folder: Path,
    args: argparse.Namespace,
) -> tuple[Sample, float | None]:
    service = targets["service"]
    url, headers, _ = request_of(scenario, targets, ctx)
    script = None
    if scenario.method != "GET":
        script = lua_script(folder, scenario.name, scenario.method, scenario.body)
    line = wrk_command(
        url, seconds=args.seconds, connections=args.connections, headers=headers, script=script
    )
    pid = targets[target_of(scenario)].pid
    logins_per_second = None
    with ExitStack() as stack:
        flood_out = (
            stack.enter_context(login_flood(service.base, folder, args.seconds))
            if scenario.flood
            else None
        )
        before = cpu_seconds(pid)
        done = subprocess.run(line, capture_output=True, text=True, check=False)
        after = cpu_seconds(pid)
    if done.returncode != 0:
        sys.exit(f"error: wrk failed for {scenario.name}: {done.stdout}{done.stderr}")
    output = done.stdout
    if flood_out:
        logins_per_second = parse_wrk(flood_out[0], expect_success=True)[0]
    rps, p50, p99, requests, unexpected, errors = parse_wrk(
        output, expect_success=scenario.status < 400
    )
    cpu = None
    if before is not None and after is not None and requests and not scenario.flood:
        cpu = (after - before) * 1000 / requests
    return Sample(rps, p50, p99, cpu, requests, unexpected, errors), logins_per_second


def versions(database_url: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("fastapi", "starlette", "pydantic", "sqlalchemy", "uvicorn", "uvloop"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    found["wrk"] = wrk_version.split("[")[0].removeprefix("wrk").strip() or "unknown"

    async def server_version() -> str:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                query = (
                    "SELECT sqlite_version()"
                    if "sqlite" in DATABASE_DRIVER
                    else "SHOW server_version"
                )
                return f"{DATABASE_DRIVER} {await connection.scalar(text(query))}"
        finally:
            await engine.dispose()

    found["database"] = asyncio.run(server_version())
    return found


def service_env(database_url: str, log_level: str, metrics_dir: Path) -> dict[str, str]:
    """Production settings, limits that count every request but refuse none (but register),
    and the metrics in multiprocess files (where `serve` keeps them; nobody scrapes here)."""
    high = "100000000/minute"
    return {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DOCS_ENABLED": "false",
        "DATABASE_URL": database_url,
        "LOG_LEVEL": log_level,
        "RATE_LIMIT_DEFAULT": high,
        "RATE_LIMIT_LOGIN": high,
        "RATE_LIMIT_LOGIN_USERNAME": high,
        # Two registrations (the two users), then every further one is the 429 scenario.
        "RATE_LIMIT_REGISTER": "2/hour",
        "RATE_LIMIT_KEY_PREFIX": f"bench-{os.getpid()}-{secrets.token_hex(4)}",
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(
    rows: list[Row], found: dict[str, str], args: argparse.Namespace, logins: list[float]
) -> str:
    by_name = {row.scenario.name: row for row in rows}

    def median(name: str, value: str) -> float | None:
        row = by_name.get(name)
        return row.median(value) if row else None

    def ratio(top: float | None, bottom: float | None) -> float | None:
        return top / bottom if top is not None and bottom else None

    bare_rps, bare_cpu = median("bare", "rps"), median("bare", "cpu_ms")
    pinning = " (server on core 0, wrk on core 1)" if pinned(0) else " (not pinned)"
    lines = [
        f"Medians of {args.rounds} interleaved rounds of {args.seconds:g} s, "
        f"{args.connections} connections, one uvicorn worker each{pinning}.",
        "",
        "| scenario | req/s | % of bare | p50 ms | p99 ms | CPU ms/req | CPU vs bare | odd |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        rps, cpu = row.median("rps"), row.median("cpu_ms")
        share = ratio(rps, bare_rps)
        odd = sum(s.unexpected + s.errors for s in row.samples)
        lines.append(
            f"| {row.scenario.label} | {fmt(rps, 0)} | {fmt(share and 100 * share)} %"
            f" | {fmt(row.median('p50_ms'), 2)} | {fmt(row.median('p99_ms'), 2)}"
            f" | {fmt(cpu, 3)} | {fmt(ratio(cpu, bare_cpu), 1)}x | {odd} |"
        )
    on_cpu, off_cpu = median("item_get", "cpu_ms"), median("item_get_metrics_off", "cpu_ms")
    on_rps, off_rps = median("item_get", "rps"), median("item_get_metrics_off", "rps")
    cpu_ratio, rps_ratio = ratio(on_cpu, off_cpu), ratio(on_rps, off_rps)
    live = ratio(median("live_flood", "p99_ms"), median("live", "p99_ms"))
    item = ratio(median("item_get_flood", "p99_ms"), median("item_get", "p99_ms"))
    sustained = statistics.median(logins) if logins else None
    lines += [
        "",
        f"p99 under a flood of {FLOOD_CONNECTIONS} concurrent logins, as a multiple of idle: "
        f"/health/live {fmt(live, 2)}x, item GET {fmt(item, 2)}x; "
        f"logins/s the worker sustained meanwhile: {fmt(sustained)}.",
        f"Metrics on the item GET: CPU per request {fmt(cpu_ratio, 3)}x the same GET with "
        f"METRICS_ENABLED=false ({fmt(on_cpu, 3)} vs {fmt(off_cpu, 3)} ms), "
        f"req/s {fmt(rps_ratio, 3)}x.",
        "odd: responses of another status class than the scenario's, plus socket errors.",
        "",
        "Versions: " + ", ".join(f"{name} {value}" for name, value in found.items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", help="comma-separated scenario names (the baseline always runs)")
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    parser.add_argument("--log-level", default="INFO", help="the service's LOG_LEVEL")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1:
        parser.error("--rounds, --seconds and --connections must be positive")
    if shutil.which("wrk") is None:
        sys.exit("error: wrk is not on PATH (apt-get install wrk, or brew install wrk)")
    chosen = scenarios()
    if args.only:
        names = {name.strip() for name in args.only.split(",")}
        unknown = names - {s.name for s in chosen}
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
        always = {"live", "item_get", "item_get_metrics_off"}
        chosen = [s for s in chosen if s.bare or s.name in names | always]

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        database_url = stack.enter_context(bench_database())
        (folder / "metrics").mkdir()
        env = service_env(database_url, args.log_level, folder / "metrics")
        probe = API + "/health/live"
        service = stack.enter_context(served("app.main:app", env, folder / "service.log", probe))
        unmeasured = {**env, "METRICS_ENABLED": "false"}
        metrics_off = stack.enter_context(
            served("app.main:app", unmeasured, folder / "metrics-off.log", probe)
        )
        bare = stack.enter_context(served("bench.bare:app", {}, folder / "bare.log", "/bare"))
        targets = {
            "service": Target(*service),
            "metrics_off": Target(*metrics_off),
            "bare": Target(*bare),
        }
        ctx = prepare(targets["service"].base)
        check_statuses(targets, chosen, ctx)
        found = versions(database_url)
        rows = [Row(s) for s in chosen]
        logins: list[float] = []
        for number in range(1, args.rounds + 1):
            for row in rows:
                settle(targets)
                sample, login_rate = run_one(row.scenario, targets, ctx, folder, args)
                row.samples.append(sample)
                if login_rate is not None:
                    logins.append(login_rate)
            sys.stderr.write(f"round {number}/{args.rounds} done\n")
    sys.stdout.write(report(rows, found, args, logins) + "\n")
    if args.json:
        data = {
            "versions": found,
            "args": {k: str(v) for k, v in vars(args).items()},
            "rows": [
                {"scenario": asdict(r.scenario), "samples": [asdict(s) for s in r.samples]}
                for r in rows
            ],
        }
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
