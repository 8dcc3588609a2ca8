"""The generated test suite. PROJECT_DIR is the source tree the tests run from."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
