"""The local web app behind `image_stylization_app`: a page for blending styles, and the REST API
that the page itself uses, so scripts can call the same server.

    from image_stylization import app
    web = app.create_app()                       # a FastAPI application (the [app] extra)
    app.serve(web, host="127.0.0.1", port=8765)  # blocks; or app.BackgroundServer(web) in a thread

Endpoints (every error is JSON `{"error": "<one line>"}` with the status below):

    GET  /                               the page (HTML, JS and CSS from this package only)
    GET  /api/styles                     {"names": [...], "styles": [{key, index, name, kind,
                                         thumbnail}, ...]}
    GET  /api/styles/{index}/thumbnail.png  the demo photo in that style (made at start-up)
    GET  /api/config                     limits and defaults the page reads
    GET  /api/demo.jpg                   the demo photo
    POST /api/stylize                    multipart `image`, `styles`, optional `strength`,
                                         `preserve_color`, `max_size` -> image/png
    GET  /openapi.json                   the API as OpenAPI 3

`POST /api/stylize` answers 400 for an unreadable image or bad fields, 413 for a body over
`max_upload_mb`, 503 when too many requests are already waiting. Inference runs on one worker
thread (TensorFlow already spreads one inference over every core), so simultaneous requests
queue instead of oversubscribing the CPU.
"""

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib
import io
import logging
import os
import socket
import threading
import time

from image_stylization import errors, image_io

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "image_stylization[app]"'
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 20.0
# Longest side the server stylizes at: 2048 px needs ~2.5 GB of activations with the bundled
# network; a request asking for more is refused rather than swapping the machine.
DEFAULT_MAX_SIZE_LIMIT = 2048
PREVIEW_SIZE = 256  # what the page sends while a slider moves, and webcam frames
THUMBNAIL_SIZE = 128
# Decoding is refused above this, from the header: a small PNG can decode to gigabytes.
MAX_INPUT_PIXELS = 100_000_000
MAX_WAITING = 32  # requests queued or running before the server answers 503
MAX_BLEND = 4  # styles one blend on the page holds (the API takes any number)

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app_page")
_PAGE_FILES = {  # served name -> (file in PAGE_DIR, media type)
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
    "favicon.svg": ("favicon.svg", "image/svg+xml"),
}
# The page loads nothing from anywhere but this server; the browser enforces it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def require_app_extra():
    """Raises `errors.DependencyError` naming the `[app]` extra if a package of it is missing."""
    missing = []
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                            ("python_multipart", "python-multipart")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise errors.DependencyError(
            f"the web app needs the [app] extra ({', '.join(missing)} not installed): "
            f"{INSTALL_HINT}"
        )


class RequestError(errors.InputError):
    """A request the server refuses: the message is the JSON error, `status` the HTTP status."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- the work itself


def encode_png(image):
    """float [H, W, 3] in [0, 1] or uint8 -> PNG bytes (rounded as `image_io.to_uint8`)."""
    from PIL import Image

    array = image_io.to_uint8(image)
    buffer = io.BytesIO()
    # Level 1: stylized pictures hardly compress (at 1024 px, 2.66 MB at level 1, 2.60 MB at the
    # default 6), and it is the fastest (292 ms against 362 ms, measured on this loaded machine).
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def render_png(model, data, selection, strength=1.0, preserve_color=False, max_size=None,
               max_size_limit=DEFAULT_MAX_SIZE_LIMIT, name="image"):
    """Uploaded image bytes -> PNG bytes of `stylize(image, selection, ...)`.

    The bytes are decoded as `image_io.load_image` decodes a file, so the result equals
    `stylize(path_of_the_same_file, ...)`. `max_size` 0 or None means full size, which must not
    exceed `max_size_limit`. Returns (png_bytes, (width, height)).
    """
    from image_stylization.stylize import stylize

    content = image_io.decode_image(data, name, max_pixels=MAX_INPUT_PIXELS)
    h, w = content.shape[:2]
    if not max_size and max(h, w) > max_size_limit:
        raise RequestError(
            f"{name} is {w}x{h} px; this server stylizes at most {max_size_limit} px on the "
            f"longest side: pass max_size <= {max_size_limit}"
        )
    out = stylize(content, selection, model=model, max_size=max_size or None, strength=strength,
                  preserve_color=preserve_color)
    return encode_png(out), (out.shape[1], out.shape[0])


class InferenceQueue:
    """Runs jobs one at a time on one worker thread, in arrival order.

    One TensorFlow inference already uses every core; running several at once would only make
    each slower and multiply the memory. At most `max_waiting` jobs wait or run; beyond that
    `submit` refuses (503) instead of letting a queue grow without bound.
    """

    def __init__(self, max_waiting=MAX_WAITING):
        self.max_waiting = max_waiting
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="image_stylization_app")
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self):
        return self._waiting

    def _done(self, _future):
        with self._lock:
            self._waiting -= 1

    async def run(self, fn, *args, **kwargs):
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise RequestError(
                    f"server busy: {self._waiting} requests are already waiting; try again",
                    status=503)
            self._waiting += 1
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        # Counted until the job itself ends, even if the client that asked has gone.
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)


class StyleCatalog:
    """The styles the page offers: the model's named styles, each with a thumbnail of the demo
    photo in that style, made once here (at start-up).

    Every entry has a `key` (what goes into a `--which_styles` value), a `kind` and a
    `thumbnail` URL, so entries of another kind (a painting dropped on the page, once the
    arbitrary-style network exists) can join the same list without changing the page's code.
    """

    def __init__(self, model, thumbnail_size=THUMBNAIL_SIZE):
        from image_stylization.stylize import demo_image_path, style_names_of, stylize

        self.model = model
        self.names = style_names_of(model)
        # Computed at twice the tile size, then shrunk, as `contact_sheet` does: brush strokes
        # stay visible in a small tile.
        demo = image_io.resize_max(image_io.load_image(demo_image_path()), 2 * thumbnail_size)
        tiles = stylize(demo, list(range(len(self.names))), model=model)
        self.thumbnails = [encode_png(image_io.resize_max(t, thumbnail_size)) for t in tiles]

    def entries(self):
        return [
            {"key": str(i), "index": i, "name": name, "kind": "named",
             "thumbnail": f"/api/styles/{i}/thumbnail.png"}
            for i, name in enumerate(self.names)
        ]

    def resolve(self, text):
        """A `--which_styles` value -> what `stylize` takes for one output image: an index or
        a blend dict."""
        from image_stylization.stylize import parse_which_styles

        try:
            selection = parse_which_styles(text, self.names)
        except errors.StyleError as e:
            raise RequestError(f"styles: {e}") from None
        if isinstance(selection, list) and len(selection) != 1:
            raise RequestError(
                "styles: a list gives one image per style, and this endpoint returns one image: "
                "give one style (7) or a blend ({7: 0.5, 19: 0.5})")
        return selection[0] if isinstance(selection, list) else selection  # one image back


# ----------------------------------------------------------------------------- the application


def _read_page_files():
    files = {}
    for served, (filename, media_type) in _PAGE_FILES.items():
        with open(os.path.join(PAGE_DIR, filename), "rb") as f:
            files[served] = (f.read(), media_type)
    with open(os.path.join(PAGE_DIR, "index.html"), "rb") as f:
        index = f.read()
    return index, files


class UploadLimit:
    """ASGI middleware: a request body over `max_bytes` gets a JSON 413 naming the limit.

    The rest of the body is read and dropped before answering, so the client (which is still
    sending) reads the 413 instead of a connection reset. Starlette's own body limit answers in
    plain text without the limit and without draining, hence this.
    """

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = int(max_bytes)

    def _message(self):
        return (f"upload too large: this server takes at most {self.max_bytes / 2**20:g} MB per "
                f"request (--max_upload_mb)")

    async def _reply(self, send):
        import json

        body = json.dumps({"error": self._message()}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(receive, message=None):
        while message is None or (message["type"] == "http.request" and message.get("more_body")):
            message = await receive()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = None
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                with contextlib.suppress(ValueError):
                    declared = int(value)
        if declared is not None and declared > self.max_bytes:
            await self._drain(receive)
            return await self._reply(send)

        received = 0
        over = False
        replied = False

        async def limited_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # a chunked body, or a wrong Content-Length
                    over = True
                    await self._drain(receive, message)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal replied
            if over:
                if not replied:
                    replied = True
                    await self._reply(send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not replied:
            await self._reply(send)


def create_app(model=None, checkpoint=None, max_upload_mb=DEFAULT_MAX_UPLOAD_MB,
               max_size_limit=DEFAULT_MAX_SIZE_LIMIT, thumbnail_size=THUMBNAIL_SIZE,
               max_waiting=MAX_WAITING):
    """The FastAPI application: the page, the REST API, thumbnails made now.

    Args:
      model: a transformer from `load_model`; default: `load_model(checkpoint)`.
      checkpoint: shown on the page's command line (`--checkpoint=...`); None for the bundled model.
      max_upload_mb: largest request body accepted (413 above).
      max_size_limit: largest longest side a result may have (400 above).
      thumbnail_size: longest side of each style's thumbnail.
      max_waiting: requests waiting or running before 503.
    """
    require_app_extra()
    from typing import Annotated

    from fastapi import FastAPI, File, Form, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    from image_stylization.stylize import DEFAULT_MAX_SIZE, load_model

    if not max_upload_mb or not max_upload_mb > 0:
        raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb!r}")
    if max_size_limit < 16:
        raise ValueError(f"max_size_limit must be >= 16, got {max_size_limit!r}")
    model = model if model is not None else load_model(checkpoint)
    catalog = StyleCatalog(model, thumbnail_size)  # also traces the network before serving
    queue = InferenceQueue(max_waiting)
    index_html, page_files = _read_page_files()
    default_max_size = min(DEFAULT_MAX_SIZE, max_size_limit)
    max_upload_bytes = int(max_upload_mb * 2**20)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        queue.close()

    api = FastAPI(
        title="image_stylization",
        summary="Stylize photos with a style or a blend of styles of one N-style network.",
        version="1",
        # Swagger UI and ReDoc load their scripts from a CDN: the page must work offline.
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )
    api.state.catalog = catalog
    api.state.queue = queue

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status,
                            headers={"Cache-Control": "no-store"})

    @api.exception_handler(RequestError)
    async def _request_error(_request, e):
        return error(e.status, str(e))

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_request, e):
        first = e.errors()[0] if e.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return error(400, f"{field or 'request'}: {first.get('msg', 'invalid')}")

    @api.exception_handler(HTTPException)
    async def _http_error(_request, e):
        return error(e.status_code, str(e.detail))

    @api.exception_handler(Exception)
    async def _internal_error(_request, e):
        log.exception("request failed")
        return error(500, f"internal error: {type(e).__name__}: {e}".splitlines()[0])

    def page_response(body, media_type):
        return Response(body, media_type=media_type, headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff"})

    @api.get("/", include_in_schema=False)
    async def page():
        return page_response(index_html, "text/html; charset=utf-8")

    @api.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in page_files:
            raise HTTPException(404, f"no such file: /static/{name}")
        return page_response(*page_files[name])

    @api.get("/api/styles", summary="The model's styles")
    async def styles():
        """`names`: the display names, by index (what `--which_styles` takes besides indices).
        `styles`: one entry per style with its `key` for a `styles` value and a thumbnail URL."""
        return {"names": catalog.names, "styles": catalog.entries()}

    @api.get("/api/styles/{index}/thumbnail.png", summary="The demo photo in one style",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def thumbnail(index: int):
        if not 0 <= index < len(catalog.thumbnails):
            raise HTTPException(404, f"no style {index}: this model has {len(catalog.names)}")
        # Not cached by the browser: another server on this port may serve another model.
        return Response(catalog.thumbnails[index], media_type="image/png",
                        headers={"Cache-Control": "no-cache"})

    @api.get("/api/config", summary="Limits and defaults of this server")
    async def config():
        return {
            "checkpoint": checkpoint,
            "num_styles": len(catalog.names),
            "max_upload_mb": max_upload_mb,
            "max_size_limit": max_size_limit,
            "default_max_size": default_max_size,
            "preview_size": PREVIEW_SIZE,
            "max_blend": MAX_BLEND,
            "style_kinds": ["named"],  # "painting" joins when the arbitrary-style network lands
        }

    @api.get("/api/demo.jpg", summary="The demo photo", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}})
    async def demo():
        from image_stylization.stylize import demo_image_path

        with open(demo_image_path(), "rb") as f:
            return Response(f.read(), media_type="image/jpeg")

    @api.post(
        "/api/stylize", summary="Stylize one image", response_class=Response,
        responses={
            200: {"content": {"image/png": {}},
                  "description": "The stylized image. Headers: `X-Image-Size` (WxH), "
                                 "`Server-Timing`: `queue` (waiting for the worker) and "
                                 "`stylize` (decode, network, PNG encode), in ms."},
            400: {"description": "Unreadable image or bad field: `{\"error\": ...}`"},
            413: {"description": "Request body over --max_upload_mb: `{\"error\": ...}`"},
            503: {"description": f"More than {max_waiting} requests waiting: `{{\"error\": ...}}`"},
        },
    )
    async def stylize_endpoint(
        image: Annotated[UploadFile, File(description="The photo (any format Pillow reads).")],
        styles: Annotated[str, Form(description=(
            "A `--which_styles` value giving one image: an index or name (`7`, `'Starry night'`)"
            " or a blend `{7: 0.3, 19: 0.7}` (weights >= 0, normalized to sum 1)."))],
        strength: Annotated[float, Form(
            ge=0.0, le=1.0, description="In [0, 1]: mix of stylized (1) and input (0) pixels.")]
        = 1.0,
        preserve_color: Annotated[bool, Form(
            description="Keep the photo's colours (luminance-only transfer).")] = False,
        max_size: Annotated[int, Form(
            ge=0, le=max_size_limit,
            description=f"Longest side of the result; larger photos are downscaled, never "
                        f"upscaled. 0: full size (at most {max_size_limit}).")]
        = default_max_size,
    ):
        selection = catalog.resolve(styles)
        if 0 < max_size < 16:
            raise RequestError("max_size: must be 0 (full size) or >= 16")
        data = await image.read()
        name = os.path.basename(image.filename or "") or "image"
        queued = time.perf_counter()

        def job():
            start = time.perf_counter()
            png, size = render_png(model, data, selection, strength, preserve_color, max_size,
                                   max_size_limit, name)
            return png, size, start - queued, time.perf_counter() - start

        try:
            png, (w, h), waited, seconds = await queue.run(job)
        except (errors.InputError, ValueError) as e:
            status = getattr(e, "status", 400)
            raise RequestError(str(e).splitlines()[0], status) from None
        return Response(png, media_type="image/png", headers={
            "X-Image-Size": f"{w}x{h}",
            "Server-Timing": f"queue;dur={waited * 1000:.1f}, stylize;dur={seconds * 1000:.1f}",
            "Cache-Control": "no-store"})

    api.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    return api


# ----------------------------------------------------------------------------- serving


def bind(host, port):
    """A listening TCP socket on (host, port); port 0 picks a free one. Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock):
    """The address to open in a browser for a socket from `bind`."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # all interfaces: this machine
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app, log_level):
    import uvicorn

    # The socket comes from `bind`; access lines would log every preview while a slider moves.
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_keep_alive=30)
    return uvicorn.Server(config)


def serve(app, sock, log_level="warning"):
    """Serves `app` on the bound socket `sock` until interrupted (Ctrl-C or SIGTERM)."""
    try:
        _uvicorn_server(app, log_level).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then raises the signal again for the caller;
        # for a command-line tool that is the normal way out, not a traceback.
        pass


class BackgroundServer:
    """`app` served on a thread (tests, benchmarks, screenshots): `.url`, then `.stop()`."""

    def __init__(self, app, host=DEFAULT_HOST, port=0, log_level="warning", timeout=60):
        self._sock = bind(host, port)
        self.url = url_of(self._sock)
        self._server = _uvicorn_server(app, log_level)
        self._thread = threading.Thread(
            target=functools.partial(self._server.run, sockets=[self._sock]), daemon=True,
            name="image_stylization_app server")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)

    def stop(self):
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
