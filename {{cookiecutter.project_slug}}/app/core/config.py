"""Application settings, read once from the environment and `.env`."""

import json
import sys
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
{%- if cookiecutter.use_redis %}
from typing import Annotated, Literal, Self
{%- else %}
from typing import Annotated, Self
{%- endif %}

from limits import parse_many
from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Name and description live in project.json (data, not code), so any text is safe there.
_PROJECT = json.loads(resources.files("app").joinpath("project.json").read_text("utf-8"))
PROJECT_NAME: str = _PROJECT["name"]
PROJECT_DESCRIPTION: str = _PROJECT["description"]
PROJECT_SLUG = "{{ cookiecutter.project_slug }}"

# A value nobody should deploy: allowed locally, refused in production.
DEFAULT_SECRET_KEY = "insecure-local-secret-change-me"
MIN_SECRET_BYTES = 32


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every setting has a safe local default; production refuses the unsafe ones."""

    model_config = SettingsConfigDict(
        env_file=PROJECT_DIR / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    ENVIRONMENT: Environment = Environment.LOCAL
    DATABASE_URL: str = f"sqlite+aiosqlite:///{PROJECT_DIR / 'app.db'}"
    DATABASE_ECHO: bool = False

    SECRET_KEY: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    JWT_ALGORITHM: str = "HS256"
    JWT_ISSUER: str = PROJECT_SLUG
    JWT_AUDIENCE: str = f"{PROJECT_SLUG}-api"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=24 * 60)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=7, ge=1, le=365)

    # Argon2id cost. The defaults follow the argon2 library's recommendation; tests lower them
    # (a real verify costs ~150 ms) so the suite stays fast while still hashing for real.
    PASSWORD_HASH_TIME_COST: int = Field(default=3, ge=1, le=20)
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    PASSWORD_HASH_PARALLELISM: int = Field(default=4, ge=1, le=64)

    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    DOCS_ENABLED: bool | None = None
    LOG_LEVEL: str = "INFO"

    # --- Rate limits and request hardening ---------------------------------------------------
    # Limits in the notation of the `limits` library: "5/minute", "100 per hour", or several
    # joined by ";" ("10/minute;100/day"). Each counts requests in a moving window.
    RATE_LIMIT_DEFAULT: str = "120/minute"  # every API route but health, per client address
    RATE_LIMIT_LOGIN: str = "20/minute"  # login attempts per client address
    RATE_LIMIT_LOGIN_USERNAME: str = "5/minute"  # login attempts per username, any address
    RATE_LIMIT_REGISTER: str = "10/hour"  # registrations per client address
    # When the limit storage fails: true lets requests through (one warning logged per
    # outage), false refuses them with 503 until it is back.
    RATE_LIMIT_FAIL_OPEN: bool = True
    # Proxies (IPs or CIDRs) whose X-Forwarded-For is believed; otherwise the peer address counts.
    TRUSTED_PROXIES: Annotated[list[IPvAnyNetwork], NoDecode] = []
    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Host names the API answers to ("*.example.com" for subdomains); required in production.
    ALLOWED_HOSTS: Annotated[list[str], NoDecode] = ["*"]
{%- if cookiecutter.use_redis %}
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    # "redis" shares the limits between processes and instances; "memory" keeps them per process.
    RATE_LIMIT_STORAGE: Literal["redis", "memory"] = "redis"
    # Keeps the keys of services (or test runs) that share one Redis apart.
    RATE_LIMIT_KEY_PREFIX: str = Field(default=PROJECT_SLUG, min_length=1, max_length=64)

    @field_validator("REDIS_URL")
    @classmethod
    def _check_redis_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError("must be a Redis URL such as redis://127.0.0.1:6379/0")
        return url
{%- endif %}

    @property
    def rate_limit_storage(self) -> tuple[str, dict[str, float | str | bool]]:
        """The `limits` storage URI and its options."""
{%- if cookiecutter.use_redis %}
        if self.RATE_LIMIT_STORAGE == "redis":
            # Short timeouts: a Redis that does not answer must not hold requests up for long.
            options: dict[str, float | str | bool] = {"connect_timeout": 0.5, "stream_timeout": 0.5}
            return f"async+{self.REDIS_URL}", {"key_prefix": self.RATE_LIMIT_KEY_PREFIX, **options}
{%- endif %}
        return "async+memory://", {}

    @field_validator(
        "RATE_LIMIT_DEFAULT", "RATE_LIMIT_LOGIN", "RATE_LIMIT_LOGIN_USERNAME", "RATE_LIMIT_REGISTER"
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
            name = host.removeprefix("*.")
            if host != "*" and (not name or any(char in name for char in "*/:@ ")):
                raise ValueError(f"{host!r} is not a host name such as api.example.com")
        return [host.lower() for host in hosts]

    @property
    def project_name(self) -> str:
        return PROJECT_NAME

    @property
    def project_description(self) -> str:
        return PROJECT_DESCRIPTION

    @property
    def docs_enabled(self) -> bool:
        """API docs are on outside production unless DOCS_ENABLED says otherwise."""
        if self.DOCS_ENABLED is None:
            return self.ENVIRONMENT is not Environment.PRODUCTION
        return self.DOCS_ENABLED

    @field_validator("CORS_ORIGINS", "TRUSTED_PROXIES", "ALLOWED_HOSTS", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
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

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_database_url(cls, url: str) -> str:
        if not url.startswith("sqlite+aiosqlite://"):
            raise ValueError("must be an async SQLite URL such as sqlite+aiosqlite:///./app.db")
        return url

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.ENVIRONMENT is not Environment.PRODUCTION:
            return self
        secret = self.SECRET_KEY.get_secret_value()
        if secret == DEFAULT_SECRET_KEY:
            raise ValueError("SECRET_KEY must be set in production")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes in production")
        if "*" in self.CORS_ORIGINS:
            raise ValueError("CORS_ORIGINS may not contain '*' in production")
        return self

    @model_validator(mode="after")
    def _require_hosts_in_production(self) -> Self:
        if self.ENVIRONMENT is Environment.PRODUCTION and "*" in self.ALLOWED_HOSTS:
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
