"""The local web app behind `image_stylization_app`: a page for blending styles, and the REST API
that the page itself uses, so scripts can call the same server.

    from image_stylization import app
    web = app.create_app()                       # a FastAPI application (the [app] extra)
    app.serve(web, host="127.0.0.1", port=8765)  # blocks; or app.BackgroundServer(web) in a thread

Endpoints (every error is JSON `{"error": "<one line>"}` with the status below):

    GET  /                               the page (HTML, JS and CSS from this package only)
    GET  /api/styles                     {"names": [...], "styles": [{key, index, name, kind,
                                         thumbnail}, ...]}: the model's named styles, then the
                                         paintings uploaded so far
    GET  /api/styles/{index}/thumbnail.png  the demo photo in that style (made at start-up)
    POST /api/paintings                  multipart `painting` -> its style entry, key
                                         "painting:<hash>" (the arbitrary-style network)
    GET  /api/paintings/{key}/thumbnail.png  the demo photo in that painting's style
    GET  /api/paintings/{key}/painting.png   the painting itself, thumbnail-size
    GET  /api/config                     limits and defaults the page reads
    GET  /api/demo.jpg                   the demo photo
    POST /api/stylize                    multipart `image`, `styles`, optional `strength`,
                                         `preserve_color`, `max_size` -> image/png
    GET  /openapi.json                   the API as OpenAPI 3

`POST /api/stylize` and `POST /api/paintings` answer 400 for an unreadable image or bad fields,
413 for a body over `max_upload_mb`, 503 when too many requests are already waiting. Inference
(stylizing, and reading a painting's style) runs on one worker thread (TensorFlow already
spreads one inference over every core), so simultaneous requests queue instead of
oversubscribing the CPU.

Two networks serve two kinds of style, and one blend takes one kind: the N-style model's named
styles blend their CIN gamma/beta rows, paintings blend their style embeddings in the
arbitrary-style network. A `styles` value mixing both kinds is refused (400).
"""

import ast
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import io
import logging
import os
import socket
import threading
import time
import unicodedata

import numpy as np

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
# Paintings kept (style embedding and two thumbnails each, ~40 kB); the least recently used
# goes first, and a request naming it then gets a 400 saying to upload it again.
MAX_PAINTINGS = 32
PAINTING_PREFIX = "painting:"
NO_PAINTINGS = "this server reads no paintings (started with --nopaintings)"
MIXED_KINDS = ("styles: a blend takes either the model's named styles or paintings, not both "
               "(they are two different networks)")

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
               max_size_limit=DEFAULT_MAX_SIZE_LIMIT, name="image", style_embedding=None,
               weights=None):
    """Uploaded image bytes -> PNG bytes of `stylize(image, selection, ...)`.

    The bytes are decoded as `image_io.load_image` decodes a file, so the result equals
    `stylize(path_of_the_same_file, ...)`. `max_size` 0 or None means full size, which must not
    exceed `max_size_limit`. For paintings, `selection` is None and `style_embedding` (and
    `weights`) go to `stylize` with `model` the arbitrary-style one. Returns
    (png_bytes, (width, height)).
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
                  preserve_color=preserve_color, style_embedding=style_embedding, weights=weights)
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

    def submit(self, fn, *args, **kwargs):
        """Queues `fn` and returns its `concurrent.futures.Future` (503 `RequestError` if full)."""
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
        return future

    async def run(self, fn, *args, **kwargs):
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclasses.dataclass
class Painting:
    """A painting given as a style: its style embedding and what the page shows for it."""

    key: str  # "painting:" + the first 16 hex digits of the sha256 of the uploaded bytes
    name: str  # its file name, unique among the paintings held (what the command line names)
    embedding: object  # float32 (D,): `arbitrary.predict_style` of the decoded bytes
    thumbnail: bytes  # PNG: the demo photo in this painting's style
    painting: bytes  # PNG: the painting itself, thumbnail-size

    def entry(self):
        return {"key": self.key, "name": self.name, "kind": "painting",
                "thumbnail": f"/api/paintings/{self.key}/thumbnail.png",
                "painting": f"/api/paintings/{self.key}/painting.png"}


def painting_key(data):
    """The catalog key of a painting's bytes: the same file gives the same key (and is read once)."""
    return PAINTING_PREFIX + hashlib.sha256(data).hexdigest()[:16]


def clean_filename(filename, default="painting.png"):
    """An uploaded file's name, safe to show and to quote on a command line: its base name,
    control characters dropped, at most 100 characters."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if len(name) > 100:
        stem, ext = os.path.splitext(name)
        name = stem[: 100 - len(ext[:10])] + ext[:10]
    return name or default


class PaintingCache:
    """Paintings by key, at most `capacity`, the least recently used dropped first.

    Thread-safe: the event loop reads it, the inference worker adds to it. A second painting with
    the file name of one held gets `<stem>-2<ext>` (then -3, ...), so names on the page and on the
    command line stay unique.
    """

    def __init__(self, capacity=MAX_PAINTINGS):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self._items = collections.OrderedDict()  # key -> Painting, least recently used first
        self._order = {}  # key -> when it was added: the page lists paintings in that order
        self._added = 0
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._items)

    def get(self, key):
        """The painting, marked as just used; None if it is not (or no longer) held."""
        with self._lock:
            painting = self._items.get(key)
            if painting is not None:
                self._items.move_to_end(key)
            return painting

    def _unique(self, name):
        taken = {p.name for p in self._items.values()}
        stem, ext = os.path.splitext(name)
        k = 1
        while name in taken:
            k += 1
            name = f"{stem}-{k}{ext}"
        return name

    def add(self, painting):
        """Adds `painting` (renamed if its name is taken) and returns what is held under its key."""
        with self._lock:
            held = self._items.get(painting.key)
            if held is not None:
                self._items.move_to_end(painting.key)
                return held
            painting = dataclasses.replace(painting, name=self._unique(painting.name))
            self._items[painting.key] = painting
            self._added += 1
            self._order[painting.key] = self._added
            while len(self._items) > self.capacity:
                old, _ = self._items.popitem(last=False)
                del self._order[old]
            return painting

    def all(self):
        """Every painting held, in the order they were added."""
        with self._lock:
            return sorted(self._items.values(), key=lambda p: self._order[p.key])


@dataclasses.dataclass
class Style:
    """What a `styles` value resolves to: the network to run and `stylize`'s style arguments."""

    kind: str  # "named" or "painting"
    model: object
    selection: object = None  # named: an index or a {index: weight} blend
    style_embedding: object = None  # painting: (D,) or (K, D) with `weights`
    weights: object = None


def _is_painting_key(key):
    return isinstance(key, str) and key.strip().startswith(PAINTING_PREFIX)


class StyleCatalog:
    """The styles the page offers: the model's named styles, each with a thumbnail of the demo
    photo in that style, made once here (at start-up); and, with an arbitrary-style model, the
    paintings given since (`read_painting`), each with the same kind of thumbnail.

    Every entry has a `key` (what goes into a `styles` value), a `kind` ("named" or "painting")
    and a `thumbnail` URL, so the page renders both kinds with the same code.
    """

    def __init__(self, model, thumbnail_size=THUMBNAIL_SIZE, arbitrary_model=None,
                 max_paintings=MAX_PAINTINGS):
        from image_stylization.stylize import demo_image_path, style_names_of, stylize

        self.model = model
        self.names = style_names_of(model)
        self.thumbnail_size = thumbnail_size
        # Computed at twice the tile size, then shrunk, as `contact_sheet` does: brush strokes
        # stay visible in a small tile.
        self.demo = image_io.resize_max(image_io.load_image(demo_image_path()), 2 * thumbnail_size)
        tiles = stylize(self.demo, list(range(len(self.names))), model=model)
        self.thumbnails = [encode_png(image_io.resize_max(t, thumbnail_size)) for t in tiles]
        self.arbitrary_model = arbitrary_model
        self.paintings = PaintingCache(max_paintings) if arbitrary_model is not None else None

    def entries(self):
        named = [
            {"key": str(i), "index": i, "name": name, "kind": "named",
             "thumbnail": f"/api/styles/{i}/thumbnail.png"}
            for i, name in enumerate(self.names)
        ]
        return named + [p.entry() for p in (self.paintings.all() if self.paintings else [])]

    # -- paintings (run on the inference worker: they use the networks)

    def read_painting(self, data, filename):
        """Painting bytes -> a `Painting` (decoded as `load_image` reads the file, so its
        embedding is `predict_style(path)`'s), added to the catalog; returns the one held."""
        from image_stylization.arbitrary import predict_style
        from image_stylization.stylize import stylize

        key = painting_key(data)
        held = self.paintings.get(key)
        if held is not None:
            return held
        image = image_io.decode_image(data, filename, max_pixels=MAX_INPUT_PIXELS)
        embedding = predict_style(image, model=self.arbitrary_model)
        pastiche = stylize(self.demo, style_embedding=embedding, model=self.arbitrary_model,
                           max_size=None)
        return self.paintings.add(Painting(
            key, filename, embedding,
            thumbnail=encode_png(image_io.resize_max(pastiche, self.thumbnail_size)),
            painting=encode_png(image_io.resize_max(image, self.thumbnail_size))))

    def warm_up(self):
        """Traces the arbitrary-style networks (a few seconds the first time), so the first
        painting dropped on the page is as quick as the next."""
        from image_stylization.stylize import stylize

        stylize(self.demo, style_image=self.demo, model=self.arbitrary_model, max_size=None,
                strength=0.5)

    # -- `styles` values

    def _paintings_of(self, keys):
        if self.paintings is None:
            raise RequestError(f"styles: {NO_PAINTINGS}")
        found, missing = [], []
        for key in keys:
            painting = self.paintings.get(key)
            (found if painting is not None else missing).append(painting or key)
        if missing:
            raise RequestError(
                f"styles: no painting {missing[0]} on this server (it keeps the "
                f"{self.paintings.capacity} most recently used): upload it again with POST "
                f"/api/paintings")
        return found

    def resolve(self, text):
        """A `styles` value -> `Style` for one output image: a named style or a blend of named
        styles (a `--which_styles` value), or a painting key (quoted or not) or a blend of
        painting keys (`{'painting:<hash>': 0.3, ...}`). A blend mixing both kinds is a 400."""
        from image_stylization.stylize import parse_which_styles

        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = text.strip()  # an unquoted name or painting key
        if isinstance(value, str) and _is_painting_key(value):
            (painting,) = self._paintings_of([value.strip()])
            return Style("painting", self.arbitrary_model, style_embedding=painting.embedding)
        if isinstance(value, dict) and any(_is_painting_key(k) for k in value):
            if not all(_is_painting_key(k) for k in value):
                raise RequestError(MIXED_KINDS)
            from image_stylization.arbitrary import blend_weights

            paintings = self._paintings_of([k.strip() for k in value])
            weights = list(value.values())
            try:
                blend_weights(weights, len(weights))  # refused here, before the queue
            except errors.StyleError as e:
                raise RequestError(f"styles: {e}") from None
            return Style("painting", self.arbitrary_model, weights=weights,
                         style_embedding=np.stack([p.embedding for p in paintings]))
        if isinstance(value, (list, tuple)) and any(_is_painting_key(k) for k in value):
            raise RequestError(
                "styles: a list gives one image per style, and this endpoint returns one image: "
                "give one painting key or a blend {'painting:...': 0.5, 'painting:...': 0.5}")
        try:
            selection = parse_which_styles(text, self.names)
        except errors.StyleError as e:
            raise RequestError(f"styles: {e}") from None
        if isinstance(selection, list) and len(selection) != 1:
            raise RequestError(
                "styles: a list gives one image per style, and this endpoint returns one image: "
                "give one style (7) or a blend ({7: 0.5, 19: 0.5})")
        selection = selection[0] if isinstance(selection, list) else selection  # one image back
        return Style("named", self.model, selection=selection)


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
               max_waiting=MAX_WAITING, paintings=True, arbitrary_model=None,
               arbitrary_checkpoint=None, max_paintings=MAX_PAINTINGS):
    """The FastAPI application: the page, the REST API, thumbnails made now.

    Args:
      model: a transformer from `load_model`; default: `load_model(checkpoint)`.
      checkpoint: shown on the page's command line (`--checkpoint=...`); None for the bundled model.
      max_upload_mb: largest request body accepted (413 above).
      max_size_limit: largest longest side a result may have (400 above).
      thumbnail_size: longest side of each style's thumbnail.
      max_waiting: requests waiting or running before 503.
      paintings: offer any painting as a style (`POST /api/paintings`), with the arbitrary-style
        network.
      arbitrary_model: an `arbitrary.ArbitraryModel`; default: `arbitrary_checkpoint`'s.
      arbitrary_checkpoint: an arbitrary-style checkpoint directory; None for the bundled
        `arbitrary_v1` (also shown on the page's command line for painting blends).
      max_paintings: paintings kept at once (least recently used dropped first).
    """
    require_app_extra()
    from typing import Annotated

    from fastapi import FastAPI, File, Form, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    from image_stylization.arbitrary import ArbitraryModel, load_arbitrary_model
    from image_stylization.stylize import DEFAULT_MAX_SIZE, load_model

    if not max_upload_mb or not max_upload_mb > 0:
        raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb!r}")
    if max_size_limit < 16:
        raise ValueError(f"max_size_limit must be >= 16, got {max_size_limit!r}")
    model = model if model is not None else load_model(checkpoint)
    if isinstance(model, ArbitraryModel):
        raise errors.CheckpointError(
            f"{checkpoint or 'the model given'} is an arbitrary-style model; the app's "
            f"--checkpoint takes an N-style model, and paintings use --arbitrary_checkpoint "
            f"(default: the bundled arbitrary_v1)")
    if paintings and arbitrary_model is None:
        arbitrary_model = load_arbitrary_model(arbitrary_checkpoint)
    catalog = StyleCatalog(model, thumbnail_size, arbitrary_model if paintings else None,
                           max_paintings)  # also traces the N-style network before serving
    queue = InferenceQueue(max_waiting)
    if catalog.paintings is not None:
        # On the worker, while the server already answers: requests queue behind it.
        queue.submit(catalog.warm_up).add_done_callback(_log_failure("warming up the "
                                                                     "arbitrary-style network"))
    index_html, page_files = _read_page_files()
    default_max_size = min(DEFAULT_MAX_SIZE, max_size_limit)
    max_upload_bytes = int(max_upload_mb * 2**20)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        queue.close()

    api = FastAPI(
        title="image_stylization",
        summary="Stylize photos with a style or a blend of styles of one N-style network, or "
                "with any painting (or a blend of paintings) through the arbitrary-style one.",
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

    @api.get("/api/styles", summary="The model's styles and the paintings uploaded so far")
    async def styles():
        """`names`: the N-style model's display names, by index (what `--which_styles` takes
        besides indices). `styles`: one entry per style with its `key` for a `styles` value,
        its `kind` (`named`, then `painting` in the order they were uploaded) and a thumbnail URL
        (paintings also have `painting`, the painting's own thumbnail)."""
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
            "style_kinds": ["named", "painting"] if catalog.paintings is not None else ["named"],
            "arbitrary_checkpoint": arbitrary_checkpoint,
            "max_paintings": max_paintings if catalog.paintings is not None else 0,
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
            " or a blend `{7: 0.3, 19: 0.7}` (weights >= 0, normalized to sum 1); or a painting "
            "key from `POST /api/paintings` (`'painting:...'`) or a blend of painting keys. One "
            "blend takes one kind: named styles or paintings."))],
        strength: Annotated[float, Form(
            ge=0.0, le=1.0, description=(
                "In [0, 1]. Named styles: mix of stylized (1) and input (0) pixels. Paintings: "
                "the style embedding from the photo's own (0) to the painting's (1)."))]
        = 1.0,
        preserve_color: Annotated[bool, Form(
            description="Keep the photo's colours (luminance-only transfer).")] = False,
        max_size: Annotated[int, Form(
            ge=0, le=max_size_limit,
            description=f"Longest side of the result; larger photos are downscaled, never "
                        f"upscaled. 0: full size (at most {max_size_limit}).")]
        = default_max_size,
    ):
        style = catalog.resolve(styles)
        if 0 < max_size < 16:
            raise RequestError("max_size: must be 0 (full size) or >= 16")
        data = await image.read()
        name = os.path.basename(image.filename or "") or "image"
        queued = time.perf_counter()

        def job():
            start = time.perf_counter()
            png, size = render_png(style.model, data, style.selection, strength, preserve_color,
                                   max_size, max_size_limit, name,
                                   style_embedding=style.style_embedding, weights=style.weights)
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

    def painting_of(key):
        painting = catalog.paintings.get(key) if catalog.paintings is not None else None
        if painting is None:
            raise HTTPException(404, f"no painting {key} on this server")
        return painting

    @api.post(
        "/api/paintings", summary="Read a painting's style (any painting as a style)",
        responses={
            200: {"description": "Its style entry: `key` (for `styles`), `name`, `kind` "
                                 "(`painting`), `thumbnail` and `painting` URLs. The same "
                                 "file again gives the same entry without running anything."},
            400: {"description": "Unreadable image: `{\"error\": ...}`"},
            404: {"description": "This server reads no paintings (--nopaintings)"},
            413: {"description": "Request body over --max_upload_mb: `{\"error\": ...}`"},
            503: {"description": f"More than {max_waiting} requests waiting"},
        },
    )
    async def add_painting(
        painting: Annotated[UploadFile, File(description=(
            "The painting (any format Pillow reads); its longest side is resized to the style "
            "predictor's size (256 px for arbitrary_v1)."))],
    ):
        if catalog.paintings is None:
            raise RequestError(NO_PAINTINGS, status=404)
        data = await painting.read()
        held = catalog.paintings.get(painting_key(data))  # the same file: nothing to run
        if held is not None:
            return held.entry()
        name = clean_filename(painting.filename)
        try:
            return (await queue.run(catalog.read_painting, data, name)).entry()
        except (errors.InputError, ValueError) as e:
            raise RequestError(str(e).splitlines()[0], getattr(e, "status", 400)) from None

    @api.get("/api/paintings/{key}/thumbnail.png",
             summary="The demo photo in a painting's style", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    async def painting_thumbnail(key: str):
        return Response(painting_of(key).thumbnail, media_type="image/png",
                        headers={"Cache-Control": "no-cache"})

    @api.get("/api/paintings/{key}/painting.png", summary="A painting, thumbnail-size",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def painting_image(key: str):
        return Response(painting_of(key).painting, media_type="image/png",
                        headers={"Cache-Control": "no-cache"})

    api.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    return api


def _log_failure(what):
    def callback(future):
        if not future.cancelled() and future.exception() is not None:
            log.warning("%s failed: %s", what, future.exception())
    return callback


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
