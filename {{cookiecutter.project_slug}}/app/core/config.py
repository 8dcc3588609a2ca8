"""Application settings, read once from the environment and `.env`."""

import json
import sys
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
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

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
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
