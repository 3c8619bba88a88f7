"""`GET /docs`: Swagger UI over the OpenAPI schema, its script and stylesheet served by the
service itself from the `swagger-ui-bundle-v2` package. FastAPI's own page loads them from a
CDN, so it was blank wherever the service runs without the internet."""

from __future__ import annotations

import functools
import mimetypes

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

router = APIRouter(tags=["operations"])

ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


@router.get("/docs", include_in_schema=False)
async def page() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="llmgather serve: API",
        swagger_js_url="/docs/swagger-ui-bundle.js",
        swagger_css_url="/docs/swagger-ui.css",
        swagger_favicon_url="/docs/favicon-32x32.png",
    )


@router.get("/docs/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404)  # answered as any unknown route is (`service.refusals`)
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    # The files change only with the package: a browser may keep them for the day.
    return Response(_read(name), media_type=kind, headers={"cache-control": "max-age=86400"})


@functools.cache
def _read(name: str) -> bytes:
    return (swagger_ui_path / name).read_bytes()
