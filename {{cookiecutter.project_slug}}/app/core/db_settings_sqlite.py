"""The settings of the SQLite database: the URL's driver and default.

`Settings` (app/core/config.py) holds them with the rest.
"""

from pydantic_settings import BaseSettings

DATABASE_DRIVER = "sqlite+aiosqlite"
DATABASE_URL_EXAMPLE = "sqlite+aiosqlite:///./app.db"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./app.db"  # app.db in the working directory


class DatabaseSettings(BaseSettings):
    """None of its own: SQLite is embedded, with no pool to size and no server to wait for."""
