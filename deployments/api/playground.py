"""The browser playground: plain static files, no build step."""

from pathlib import Path

from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from deployments.api.common import new_router

DIRECTORY = Path(__file__).resolve().parents[2] / "playground"
STATIC_FILES = StaticFiles(directory=DIRECTORY)  # mounted at /playground

router = new_router()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The playground page (its scripts and styles are under ``/playground/``)."""
    return FileResponse(DIRECTORY / "index.html")
