"""The dashboard's ASGI app: HTML pages, their JSON data, figures and runs' recorded artifacts;
every route reads, and only requests addressed to a name the server listens on, or to an IP
address, are answered."""

from __future__ import annotations

import contextlib
import functools
import importlib
import ipaddress
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import plotly
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cnnlab.errors import CnnlabError
from cnnlab.store.export import export_epochs
from cnnlab.ui import views
from cnnlab.ui.figures import FigureCache
from cnnlab.ui.source import Source

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC = Path(__file__).parent / "static"
POLL_MS = 2000
_templates = Environment(loader=PackageLoader("cnnlab.ui", "templates"), autoescape=select_autoescape(),
                         undefined=StrictUndefined)
# Nothing on a page may come from elsewhere: scripts, styles, images and data only from this server.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


# The names a dashboard on the loopback interface answers to: a page elsewhere whose name is made
# to point at 127.0.0.1 (DNS rebinding) sends its own name in Host and is refused.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_of(header: str | None) -> str | None:
    """The host in a Host header, lowercase, without its port or an IPv6 address's brackets
    (``[::1]:8765`` → ``::1``); None when the header is missing or malformed."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        address, bracket, rest = header[1:].partition("]")
        port = rest.removeprefix(":")
        if not bracket or (rest and (not rest.startswith(":") or not port.isdigit())):
            return None
        return address if _ip_literal(address) else None
    name, colon, port = header.partition(":")
    if not name or (colon and not port.isdigit()) or any(ch in name for ch in " /\\@[]"):
        return None
    return name


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostCheck:
    """Answer only requests addressed to one of ``names`` or to an IP address: DNS rebinding (a
    page elsewhere whose name is made to point at this server) needs a host name, so a name must
    be one the server listens on, while an address literal (``10.1.2.3``, ``[::1]:8765``) is only
    ever sent by someone who typed it. 400 for any other Host."""

    def __init__(self, app: ASGIApp, names: Sequence[str]) -> None:
        self.app = app
        self.names = frozenset(name.strip("[]").lower() for name in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = host_of(Headers(scope=scope).get("host"))
            if host is None or not (host in self.names or _ip_literal(host)):
                await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(source: Source, hosts: Sequence[str] = LOOPBACK_NAMES) -> Starlette:
    """The dashboard over ``source`` (a read-only store), answering requests whose Host header is
    one of ``hosts`` (the names the server listens on) or an IP address (`HostCheck`; 400 for any
    other)."""
    analyses = views.Analyses(source.store)
    figures = FigureCache(source, analyses)

    def page(name: str, title: str, **context: Any) -> HTMLResponse:
        html = _templates.get_template(f"{name}.html").render(
            title=title, page=name, poll_ms=POLL_MS, store=source.shown, **context)
        return HTMLResponse(html, headers={"Content-Security-Policy": _CSP})

    async def runs_page(request: Request) -> Response:
        return page("runs", "Runs")

    async def run_page(request: Request) -> Response:
        record = await _read(source.store.get_run, request.path_params["run_id"])
        return page("run", f"Run {record.id}", run_id=record.id, run_name=record.name or "")

    async def study_page(request: Request) -> Response:
        name = request.path_params["name"]
        # A sweep with runs is known at once; one without (queued only, or none at all) is looked up.
        if not await _read(functools.partial(source.store.list_runs, sweep=name, limit=1)):
            await _read(views.study_view, source, name, analyses)  # 404 for an unknown sweep
        return page("study", f"Sweep {name}", sweep=name)

    async def compare_page(request: Request) -> Response:
        refs = _refs(request)
        await _read(views.compare_view, source.store, refs)
        return page("compare", "Compare runs", refs=",".join(refs))

    async def runs_data(request: Request) -> Response:
        return JSONResponse(await _read(views.runs_view, source.store))

    async def run_data(request: Request) -> Response:
        return JSONResponse(await _read(views.run_view, source, request.path_params["run_id"]))

    async def study_data(request: Request) -> Response:
        return JSONResponse(await _read(views.study_view, source, request.path_params["name"], analyses))

    async def compare_data(request: Request) -> Response:
        return JSONResponse(await _read(views.compare_view, source.store, _refs(request)))

    async def run_epochs_file(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        record = await _read(source.store.get_run, request.path_params["run_id"])
        text = await _read(export_epochs, source.store, record.id, fmt)
        return _download(text, f"{record.id}-epochs.{fmt}", fmt)

    async def study_results_file(request: Request) -> Response:
        name, fmt = request.path_params["name"], request.path_params["fmt"]
        rows = await _read(lambda: views.study_results(analyses(name)))
        if not rows:
            raise HTTPException(404, f"no runs in sweep {name!r}")
        return _download(views.rows_text(rows, fmt), f"{name}-results.{fmt}", fmt)

    async def study_figures(request: Request) -> Response:
        key, drawn = await _read(figures.study, request.path_params["name"])
        listed = [{"title": f.title, "caption": f.caption} for f in drawn]
        return JSONResponse({"key": key, "figures": listed})

    async def study_figure(request: Request) -> Response:
        _, drawn = await _read(figures.study, request.path_params["name"])
        return _png(drawn, request.path_params["index"])

    async def run_figures(request: Request) -> Response:
        drawn, problem = await _read(figures.run, request.path_params["run_id"])
        return JSONResponse({"figures": [{"title": f.title} for f in drawn], "problem": problem})

    async def run_figure(request: Request) -> Response:
        drawn, _ = await _read(figures.run, request.path_params["run_id"])
        return _png(drawn, request.path_params["index"])

    async def artifact_file(request: Request) -> Response:
        path = await run_in_threadpool(views.artifact_path, source, request.path_params["run_id"],
                                       request.path_params["name"])
        if path is None:
            raise HTTPException(404, "no such artifact of this run")
        # A stored HTML file opens sandboxed: no script of it runs with the dashboard's rights.
        return FileResponse(path, headers={"Content-Security-Policy": "sandbox"})

    async def no_file(request: Request) -> Response:
        raise HTTPException(404, "no such artifact: files are addressed as /files/RUN/NAME")

    async def plotly_js(request: Request) -> Response:
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    routes = [
        Route("/", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/sweeps/{name}", study_page),
        Route("/compare", compare_page),
        Route("/api/runs", runs_data),
        Route("/api/runs/{run_id}", run_data),
        Route("/api/runs/{run_id}/epochs.{fmt:fmt}", run_epochs_file),
        Route("/api/runs/{run_id}/figures", run_figures),
        Route("/api/runs/{run_id}/figures/{index:int}.png", run_figure),
        Route("/api/sweeps/{name}", study_data),
        Route("/api/sweeps/{name}/results.{fmt:fmt}", study_results_file),
        Route("/api/sweeps/{name}/figures", study_figures),
        Route("/api/sweeps/{name}/figures/{index:int}.png", study_figure),
        Route("/api/compare", compare_data),
        Route("/files/{run_id}/{name:path}", artifact_file),
        Route("/files/{path:path}", no_file),  # 404, not a redirect to a slashed path
        Route("/static/plotly.min.js", plotly_js),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _error_page}, lifespan=_preload,
                     middleware=[Middleware(HostCheck, names=list(hosts))])


@contextlib.asynccontextmanager
async def _preload(app: Starlette) -> AsyncIterator[None]:
    """Import the sweep and training modules (torch) in the background, so the address is printed at
    once and the first sweep or run page does not wait for them."""
    threading.Thread(target=importlib.import_module, args=("cnnlab.sweep.status",), daemon=True).start()
    yield


async def _read(func: Any, *args: Any) -> Any:
    """Run a (blocking) store read in a worker thread; a CnnlabError (unknown run or sweep) is a 404."""
    try:
        return await run_in_threadpool(func, *args)
    except CnnlabError as exc:
        raise HTTPException(404, str(exc)) from None


def _refs(request: Request) -> list[str]:
    refs = [ref for ref in request.query_params.get("runs", "").split(",") if ref.strip()]
    if not refs:
        raise HTTPException(404, "compare needs ?runs=ID,ID,…")
    return refs


class _FormatConvertor(Convertor):
    """``csv`` or ``json``: the formats a download comes in."""

    regex = "csv|json"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fmt", _FormatConvertor())


def _download(text: str, filename: str, fmt: str) -> Response:
    """``text`` as a file the browser saves under ``filename`` (from the store: any characters), said
    as RFC 6266's UTF-8 ``filename*`` with an ASCII ``filename`` for older clients."""
    media = "text/csv" if fmt == "csv" else "application/json"
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_"
                       for ch in filename)
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(text, media_type=f"{media}; charset=utf-8", headers={"Content-Disposition": disposition})


def _png(drawn: list[Any], index: int) -> Response:
    if not 0 <= index < len(drawn):
        raise HTTPException(404, f"figure {index} does not exist ({len(drawn)} figures)")
    return Response(drawn[index].png, media_type="image/png")


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    html = _templates.get_template("error.html").render(title=f"{exc.status_code}", page="error",
                                                        poll_ms=POLL_MS, store="", message=exc.detail)
    return HTMLResponse(html, status_code=exc.status_code, headers={"Content-Security-Policy": _CSP})
