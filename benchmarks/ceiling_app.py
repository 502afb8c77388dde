"""The ceiling of the speed benchmark: the same server stack as dcihub (uvicorn + FastAPI, one
process, a plain Starlette route for `/{registry}/registry/{path}` as dcihub mounts its DCI
endpoints) answering every POST with a precomputed response of the same size as dcihub's — no
parsing, no validation, no store, no crypto. Whatever dcihub spends beyond this is its own work.

`DCIHUB_CEILING_RESPONSE` names a file holding the response bytes. Run by `benchmarks/run.py` as
`uvicorn ceiling_app:app --app-dir benchmarks`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

RESPONSE = Path(os.environ.get("DCIHUB_CEILING_RESPONSE", "ceiling-response.json")).read_bytes()


async def answer(request: Request) -> Response:
    await request.body()
    return Response(RESPONSE, media_type="application/json")


app = FastAPI()
app.router.routes.insert(0, Route("/{registry}/registry/{path:path}", answer, methods=["POST"]))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
