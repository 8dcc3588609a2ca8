"""Application settings, read once from the environment and `.env`.

`.env` and the default SQLite file are found in the working directory, where the service (or
Alembic, or the CLI) is started, as with any twelve-factor app: never beside the installed
package, which may sit in a read-only site-packages.
"""

import json
import os
import re
import sys
from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Address
from typing import Annotated, Self

from limits import parse_many
from pydantic import (
    AnyHttpUrl,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    NameEmail,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The settings that depend on the project's options: its database, and where rate limits count.
from app.core.db_settings import (
    DATABASE_DRIVER,
    DATABASE_URL_EXAMPLE,
    DEFAULT_DATABASE_URL,
    DatabaseSettings,
)
from app.core.jobs_settings import JobsEngineSettings
from app.core.project import PROJECT_DESCRIPTION, PROJECT_NAME, PROJECT_SLUG
from app.core.ratelimit_settings import RateLimitStorageSettings
from app.core.tracing_settings import TracingSettings

# A host name (labels of letters, digits and inner hyphens; an IPv4 address is one too),
# after an optional "*." for its subdomains.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")

# A value nobody should deploy: allowed locally, refused in production.
DEFAULT_SECRET_KEY = "insecure-local-development-secret-change-me"
# RFC 7518, section 3.2: an HMAC key at least as long as the hash it keys.
MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# The key id that access tokens signed with SECRET_KEY carry, when JWT_KEYS is not set.
SECRET_KEY_KID = "main"
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class EmailBackend(StrEnum):
    SMTP = "smtp"  # send through SMTP_HOST
    LOG = "log"  # write each message to the log instead (local development, tests)


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # connect in plain text, then upgrade with STARTTLS (port 587)
    TLS = "tls"  # TLS from the first byte (implicit TLS, port 465)
    NONE = "none"  # no encryption: a relay on the same host or network only


class Settings(
    DatabaseSettings, RateLimitStorageSettings, TracingSettings, JobsEngineSettings, BaseSettings
):
    """Every setting has a safe local default; production refuses the unsafe ones."""

    model_config = SettingsConfigDict(
        env_file=".env",  # in the working directory
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    ENVIRONMENT: Environment = Environment.LOCAL
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    DATABASE_ECHO: bool = False

    SECRET_KEY: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    # The keyring that signs and verifies access tokens, each token naming its key in the `kid`
    # header: `kid:secret` pairs, comma-separated. Empty: SECRET_KEY alone, as kid "main".
    # JWT_ACTIVE_KID picks the key that signs; the others still verify (key rotation).
    JWT_KEYS: Annotated[dict[str, SecretStr], NoDecode] = {}
    JWT_ACTIVE_KID: str | None = None
    JWT_ALGORITHM: str = "HS256"
    JWT_ISSUER: str = PROJECT_SLUG
    JWT_AUDIENCE: str = f"{PROJECT_SLUG}-api"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=24 * 60)
    # Seconds of tolerance on exp, nbf and iat, for instances whose clocks differ a little.
    JWT_LEEWAY_SECONDS: int = Field(default=30, ge=0, le=300)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=7, ge=1, le=365)
    # A login's absolute lifetime: refreshing never extends it past this many days after the
    # password was entered; then the user signs in again.
    REFRESH_TOKEN_FAMILY_MAX_DAYS: int = Field(default=30, ge=1, le=3650)

    # Argon2id cost. The defaults follow the argon2 library's recommendation; tests lower them
    # (a real verify costs ~150 ms) so the suite stays fast while still hashing for real.
    PASSWORD_HASH_TIME_COST: int = Field(default=3, ge=1, le=20)
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    PASSWORD_HASH_PARALLELISM: int = Field(default=4, ge=1, le=64)
    # Hashes that run at once per process; more wait their turn. Memory held by hashing is at
    # most this x PASSWORD_HASH_MEMORY_KIB per process. Default: the CPUs the process may use
    # (set it to the container's CPU limit where that is lower).
    PASSWORD_HASH_CONCURRENCY: int = Field(default_factory=usable_cpus, ge=1, le=256)

    # --- The production server: `serve` (`make serve`, the container's command) -------------
    # The address and port uvicorn listens on (the container image sets HOST=0.0.0.0).
    HOST: IPvAnyAddress = IPv4Address("127.0.0.1")
    PORT: int = Field(default=8000, ge=1, le=65535)
    # Worker processes. Default: one per CPU this process may use (set it to the container's
    # CPU limit where that is lower).
    WEB_CONCURRENCY: int = Field(default_factory=usable_cpus, ge=1, le=256)
    # Seconds a stopping server lets open requests finish before it closes them. Keep it below
    # the platform's grace period before SIGKILL: `docker stop` waits 10 s, Kubernetes 30 s.
    GRACEFUL_SHUTDOWN_SECONDS: int = Field(default=8, ge=1, le=3600)
    # Tune the garbage collector for a server once the app has started (app/core/runtime.py);
    # false keeps CPython's defaults.
    GC_TUNING: bool = True

    # --- Metrics (Prometheus, app/core/metrics.py) --------------------------------------------
    # Recorded by every app; served by `serve` alone, from its supervising process, on a port of
    # their own (never PORT): a scraper reaches them, the API's clients do not.
    METRICS_ENABLED: bool = True
    METRICS_PORT: int = Field(default=8001, ge=1, le=65535)
    # The address the metrics listen on; unset: HOST's.
    METRICS_HOST: IPvAnyAddress | None = None

    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    DOCS_ENABLED: bool | None = None
    LOG_LEVEL: str = "INFO"

    # --- Background jobs (README, "Background jobs") -----------------------------------------
    # Run jobs in this process (the embedded runner, one per worker). Off: it only enqueues.
    JOBS_ENABLED: bool = True
    # Jobs one process runs at once.
    JOBS_CONCURRENCY: int = Field(default=4, ge=1, le=100)
    # Seconds between looks at the queue when nothing woke the runner (a commit in the same
    # process wakes it at once; other processes' jobs wait for this).
    JOBS_POLL_SECONDS: float = Field(default=1.0, gt=0, le=300)
    # A job running longer is cancelled and counts as failed; it must end before its lease.
    JOBS_TIMEOUT_SECONDS: float = Field(default=30, gt=0, le=3600)
    # How long a claim holds a job: a runner that dies mid-job delays it this long at most.
    JOBS_LEASE_SECONDS: float = Field(default=60, gt=0, le=7200)
    # Tries before a job is kept as dead, with its last error.
    JOBS_MAX_ATTEMPTS: int = Field(default=5, ge=1, le=100)
    # Retry n waits a random time up to JOBS_BACKOFF_SECONDS x 2^(n-1), at most the maximum.
    JOBS_BACKOFF_SECONDS: float = Field(default=2, gt=0, le=3600)
    JOBS_BACKOFF_MAX_SECONDS: float = Field(default=600, gt=0, le=86_400)
    # On shutdown, after the requests drained: how long running jobs may finish before they
    # are handed back to the queue (another runner starts them again).
    JOBS_SHUTDOWN_SECONDS: float = Field(default=2, ge=0, le=600)

    # --- Email (sent by jobs, never inside a request) ----------------------------------------
    EMAIL_BACKEND: EmailBackend = EmailBackend.LOG
    EMAIL_FROM: NameEmail = NameEmail(PROJECT_NAME, "noreply@example.com")
    SMTP_HOST: str | None = None
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_TLS: SmtpSecurity = SmtpSecurity.STARTTLS
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_TIMEOUT_SECONDS: float = Field(default=10, gt=0, le=300)

    # --- Account emails: password reset and email verification -------------------------------
    # Where the emails' links point: FRONTEND_URL/reset-password#token=... and
    # FRONTEND_URL/verify-email#token=... (the token in the fragment, which no server logs or
    # Referer header carries). Unset: the emails carry the token alone, to paste into the API.
    FRONTEND_URL: AnyHttpUrl | None = None
    PASSWORD_RESET_TOKEN_MINUTES: int = Field(default=30, ge=1, le=24 * 60)
    EMAIL_VERIFICATION_TOKEN_HOURS: int = Field(default=72, ge=1, le=30 * 24)
    # True: an account may sign in only once its address is verified. False: registration still
    # sends the verification email, and `email_verified` tells the API's clients.
    REQUIRE_VERIFIED_EMAIL: bool = False

    # --- Rate limits and request hardening ---------------------------------------------------
    # Limits in the notation of the `limits` library: "5/minute", "100 per hour", or several
    # joined by ";" ("10/minute;100/day"). Each counts requests in a moving window.
    RATE_LIMIT_DEFAULT: str = "120/minute"  # every API route but health, per client address
    RATE_LIMIT_LOGIN: str = "20/minute"  # login attempts per client address
    # Failed logins per username. Past it, login for that username is refused (429) only from
    # addresses that have failed too: the owner, from an address of their own, still gets in.
    RATE_LIMIT_LOGIN_USERNAME: str = "5/minute"
    # Wrong `current_password` on PATCH /users/me per user, refused the same way.
    RATE_LIMIT_CURRENT_PASSWORD: str = "5/minute"
    RATE_LIMIT_REGISTER: str = "10/hour"  # registrations per client address
    # Password-reset and verification-email requests per client address (then 429).
    RATE_LIMIT_EMAIL_REQUESTS: str = "10/hour"
    # Those emails per recipient address: past it a request is answered as always (202) and
    # nothing is sent, so the answer never tells whether the address has an account.
    RATE_LIMIT_EMAILS_PER_RECIPIENT: str = "3/hour"
    # An IPv6 client counts by its network of this many bits (a /64 is one customer's).
    RATE_LIMIT_IPV6_PREFIX: int = Field(default=64, ge=32, le=128)
    # When the limit storage fails: true lets requests through (one warning logged per
    # outage), false refuses them with 503 until it is back.
    RATE_LIMIT_FAIL_OPEN: bool = True
    # Limits kept in each process's memory count per process: `serve` refuses several workers
    # in production with them, unless this says that a client may get each limit once per
    # worker. (It cannot see other instances: in a cluster, keep the limits in Redis.)
    RATE_LIMITS_PER_PROCESS: bool = False
    # Proxies (IPs or CIDRs) whose X-Forwarded-For is believed; otherwise the peer address counts.
    TRUSTED_PROXIES: Annotated[list[IPvAnyNetwork], NoDecode] = []
    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Host names the API answers to ("*.example.com" for subdomains); required in production.
    ALLOWED_HOSTS: Annotated[list[str], NoDecode] = ["*"]

    @field_validator(
        "RATE_LIMIT_DEFAULT",
        "RATE_LIMIT_LOGIN",
        "RATE_LIMIT_LOGIN_USERNAME",
        "RATE_LIMIT_CURRENT_PASSWORD",
        "RATE_LIMIT_REGISTER",
        "RATE_LIMIT_EMAIL_REQUESTS",
        "RATE_LIMIT_EMAILS_PER_RECIPIENT",
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if not items or any(item.amount < 1 for item in items):
            raise ValueError(f"{value!r} is not a rate limit such as '5/minute' or '100/hour'")
        return value

    @field_validator("ALLOWED_HOSTS")
    @classmethod
    def _check_hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if host != "*" and not _HOST_NAME.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name such as api.example.com")
        return [host.lower() for host in hosts]

    @property
    def project_name(self) -> str:
        return PROJECT_NAME

    @property
    def project_description(self) -> str:
        return PROJECT_DESCRIPTION

    @property
    def jwt_keys(self) -> dict[str, SecretStr]:
        """Every key an access token may be signed with, by key id."""
        return dict(self.JWT_KEYS) or {SECRET_KEY_KID: self.SECRET_KEY}

    @property
    def jwt_signing_kid(self) -> str:
        """The id of the key that signs new access tokens."""
        return self.JWT_ACTIVE_KID or next(iter(self.jwt_keys))

    @property
    def metrics_host(self) -> str:
        return str(self.METRICS_HOST or self.HOST)

    @property
    def docs_enabled(self) -> bool:
        """API docs are on outside production unless DOCS_ENABLED says otherwise."""
        if self.DOCS_ENABLED is None:
            return self.ENVIRONMENT is not Environment.PRODUCTION
        return self.DOCS_ENABLED

    @field_validator("CORS_ORIGINS", "TRUSTED_PROXIES", "ALLOWED_HOSTS", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        """Comma-separated (`a.example.com,b.example.com`) or a JSON list (`["a", "b"]`)."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    return json.loads(value)
                except json.JSONDecodeError:
                    message = f"{value!r} is neither a JSON list nor comma-separated values"
                    raise ValueError(message) from None
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("CORS_ORIGINS")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
        return [origin.rstrip("/") for origin in origins]

    @field_validator("LOG_LEVEL")
    @classmethod
    def _check_log_level(cls, level: str) -> str:
        level = level.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("JWT_ALGORITHM")
    @classmethod
    def _check_algorithm(cls, algorithm: str) -> str:
        if algorithm not in {"HS256", "HS384", "HS512"}:
            raise ValueError("must be one of HS256, HS384, HS512")
        return algorithm

    @field_validator("JWT_KEYS", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        """`kid:secret,kid:secret`. Errors name the entry, never its text (it holds a secret)."""
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        entries = [entry.strip() for entry in value.split(",")] if value.strip() else []
        for number, entry in enumerate(entries, start=1):
            kid, colon, secret = (part.strip() for part in entry.partition(":"))
            if not colon:
                raise ValueError(f"entry {number} is not a kid:secret pair")
            if kid in keys:
                raise ValueError(f"key id {kid!r} appears twice")
            keys[kid] = secret
        return keys

    @field_validator("JWT_KEYS")
    @classmethod
    def _check_keys(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for number, (kid, secret) in enumerate(keys.items(), start=1):
            if not _KID.fullmatch(kid):
                raise ValueError(
                    f"entry {number}: a key id is 1 to 64 letters, digits, '.', '_' or '-'"
                )
            if not secret.get_secret_value():
                raise ValueError(f"key {kid!r} is empty")
        return keys

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_database_url(cls, url: str) -> str:
        """A parseable URL for the driver this service was generated for."""
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            raise ValueError(
                f"is not a database URL; expected one like {DATABASE_URL_EXAMPLE}"
            ) from None
        if parsed.drivername != DATABASE_DRIVER:
            raise ValueError(
                f"uses {parsed.drivername!r}, but this service is built for {DATABASE_DRIVER!r}; "
                f"expected a URL like {DATABASE_URL_EXAMPLE}"
            )
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError(f"names no database; expected a URL like {DATABASE_URL_EXAMPLE}")
        return url

    @model_validator(mode="after")
    def _check_active_kid(self) -> Self:
        known = ", ".join(self.jwt_keys)
        if self.JWT_ACTIVE_KID is None and len(self.jwt_keys) > 1:
            raise ValueError(f"JWT_ACTIVE_KID must name the signing key, one of: {known}")
        if self.JWT_ACTIVE_KID is not None and self.JWT_ACTIVE_KID not in self.jwt_keys:
            raise ValueError(f"JWT_ACTIVE_KID is not a key id of the keyring ({known})")
        return self

    @model_validator(mode="after")
    def _check_metrics_port(self) -> Self:
        if self.METRICS_ENABLED and self.METRICS_PORT == self.PORT:
            raise ValueError(
                f"METRICS_PORT must differ from PORT ({self.PORT}): the API port never serves "
                "the metrics"
            )
        return self

    @model_validator(mode="after")
    def _check_jobs(self) -> Self:
        if self.JOBS_TIMEOUT_SECONDS >= self.JOBS_LEASE_SECONDS:
            raise ValueError(
                "JOBS_TIMEOUT_SECONDS must be below JOBS_LEASE_SECONDS, so that no job is "
                "still running when its lease lets another runner claim it"
            )
        if self.JOBS_BACKOFF_SECONDS > self.JOBS_BACKOFF_MAX_SECONDS:
            raise ValueError("JOBS_BACKOFF_SECONDS may not exceed JOBS_BACKOFF_MAX_SECONDS")
        return self

    @model_validator(mode="after")
    def _check_email(self) -> Self:
        if self.EMAIL_BACKEND is EmailBackend.SMTP and not self.SMTP_HOST:
            raise ValueError("SMTP_HOST must be set when EMAIL_BACKEND is smtp")
        if (self.SMTP_USERNAME is None) != (self.SMTP_PASSWORD is None):
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD are set together, or neither")
        return self

    @field_validator("SMTP_HOST")
    @classmethod
    def _check_smtp_host(cls, host: str | None) -> str | None:
        if host is None or not host.strip():
            return None  # unset (an empty line in .env too)
        if any(char in host for char in "/@ "):
            raise ValueError(f"{host!r} is not a host name or address such as smtp.example.com")
        return host.strip()

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.ENVIRONMENT is not Environment.PRODUCTION:
            return self
        # The keys that sign and verify: JWT_KEYS when set, else SECRET_KEY alone.
        if self.JWT_KEYS:
            keys = {f"JWT_KEYS key {kid!r}": key for kid, key in self.JWT_KEYS.items()}
        elif self.SECRET_KEY.get_secret_value() == DEFAULT_SECRET_KEY:
            raise ValueError("SECRET_KEY must be set in production")
        else:
            keys = {"SECRET_KEY": self.SECRET_KEY}
        minimum = MIN_KEY_BYTES[self.JWT_ALGORITHM]
        for name, key in keys.items():
            if len(key.get_secret_value().encode()) < minimum:
                raise ValueError(f"{name} must be at least {minimum} bytes in production")
        if "*" in self.CORS_ORIGINS:
            raise ValueError("CORS_ORIGINS may not contain '*' in production")
        if "*" in self.ALLOWED_HOSTS:
            raise ValueError("ALLOWED_HOSTS must list the API's host names in production")
        return self


def describe_error(error: ValidationError) -> str:
    """One line naming each bad setting, with no input values (they may be secrets)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "invalid configuration: " + "; ".join(parts)


@lru_cache
def get_settings() -> Settings:
    """The settings of this process; exits with one clear line when they are invalid."""
    try:
        return Settings()
    except ValidationError as error:
        sys.exit(describe_error(error))
