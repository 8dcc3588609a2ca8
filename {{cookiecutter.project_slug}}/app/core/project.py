"""The project's name, slug and description, read from app/project.json.

They live in a data file, not in code, so any text is safe there.
"""

import json
from importlib import resources

_PROJECT = json.loads(resources.files("app").joinpath("project.json").read_text("utf-8"))
PROJECT_NAME: str = _PROJECT["name"]
PROJECT_SLUG: str = _PROJECT["slug"]
PROJECT_DESCRIPTION: str = _PROJECT["description"]
