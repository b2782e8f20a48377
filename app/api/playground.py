"""The playground, the studio and the API docs UI: static pages served from vendored files (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
router = APIRouter(tags=["Playground"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    """A browser opening the server's address lands on the API docs (they link the playground)."""
    return RedirectResponse("/docs", status_code=307)


@router.get("/playground", include_in_schema=False)
async def playground() -> FileResponse:
    """The playground page: enter a key and a prompt, watch progress, view and download the model."""
    return FileResponse(STATIC / "playground" / "index.html", media_type="text/html")


@router.get("/studio", include_in_schema=False)
async def studio() -> FileResponse:
    """The studio: every resource in the browser, from a photo or a prompt to a rigged, animated character."""
    return FileResponse(STATIC / "studio" / "index.html", media_type="text/html")


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    """Swagger UI from vendored files, so the API docs work without internet access."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="MeshFoundry API",
        swagger_js_url="/playground/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/playground/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/playground/vendor/swagger-ui/favicon-32x32.png",
    )


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/playground/static", StaticFiles(directory=STATIC / "playground"), name="playground-static")
    app.mount("/studio/static", StaticFiles(directory=STATIC / "studio"), name="studio-static")
    # model-viewer (with three.js) from the npm registry, vendored so the page works offline; see vendor/README.md
    app.mount("/playground/vendor", StaticFiles(directory=STATIC / "vendor"), name="playground-vendor")
