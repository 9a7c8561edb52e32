"""``/docs``: Swagger UI for the API, served offline from the installed ``swagger-ui-py``
package's copy of Swagger UI 5 (``swagger_ui/static/``), never from a CDN.

Only the files are used (the package's own framework glue is not): a Starlette ``StaticFiles``
mount and a small page of our own pointing at ``openapi.json``. Every URL in the page is
relative, so it works behind a reverse proxy that adds a path prefix. Without the package the
page says so (503) and the rest of the API is unaffected.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>edgemon backend API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/swagger-initializer-edgemon.js"></script>
</body>
</html>
"""
# Kept out of the page so that a Content-Security-Policy without 'unsafe-inline' still works.
INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""
FILES = ("swagger-ui.css", "swagger-ui-bundle.js")


def swagger_static() -> Path | None:
    """The installed package's ``static`` folder (found without importing the package)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / name).is_file() for name in FILES) else None


def docs_routes() -> list[BaseRoute]:
    static = swagger_static()

    async def page(_request: Request) -> Response:
        if static is None:
            text = "Swagger UI is not installed (pip install swagger-ui-py); see /openapi.json"
            return HTMLResponse(text, status_code=503)
        return HTMLResponse(PAGE)

    async def init(_request: Request) -> Response:
        return Response(INIT, media_type="text/javascript")

    routes: list[BaseRoute] = [
        Route("/docs", page, methods=["GET"]),
        Route("/docs/static/swagger-initializer-edgemon.js", init, methods=["GET"]),
    ]
    if static is not None:
        routes.append(Mount("/docs/static", StaticFiles(directory=static), name="swagger"))
    return routes
