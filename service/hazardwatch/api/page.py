"""The review page at `/`: one HTML file, its script and stylesheet, packaged with the
wheel and served by the API itself (no asset from another host: it works on an isolated
network). The page holds no data; what it shows comes from the API with the caller's
session, so it is served without one, under a content security policy that lets it load
and call nothing but this origin."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

PAGE_DIR = Path(str(resources.files("hazardwatch") / "api" / "page"))
PAGE_PREFIX = "/page"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    # Signed media links carry their signature in the URL: never sent on to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def serve_page(app: FastAPI) -> None:
    app.mount(PAGE_PREFIX, StaticFiles(directory=PAGE_DIR), name="page")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers=HEADERS)
