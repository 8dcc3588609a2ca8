"""The baseline of `make bench`: one FastAPI route and nothing else, in the same virtualenv.

Every figure the benchmark prints for this service is a ratio to this app, served by the same
server with the same flags in the same run, so the ratios compare across machines even where
the absolute numbers do not.
"""

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}
