"""Stylizing video: decode, stylize each frame, steady the result over time, encode; sound kept.

    from image_stylization.video import stylize_video
    stylize_video("clip.mp4", 7, "clip_7.mp4")
    stylize_video("clip.mp4", [3, 7], ["clip_3.mp4", "clip_7.mp4"])   # one decode, batched styles
    stylize_video("clip.mp4", {3: 0.5, 7: 0.5}, "clip_blend.mp4")      # one blend

Each output has the input's frame count, size, timestamps (so its frame rate) and rotation
metadata, and the input's first audio stream copied packet for packet (re-encoded to AAC only when
MP4 cannot hold its codec). Video is H.264 (yuv420p, CRF 15 by default: visually lossless), tagged
BT.709.

Flicker: a network stylizing frames one by one turns sensor noise and compression artefacts into
texture that changes every frame. With `temporal_smoothing` > 0, each stylized frame is blended
with the previous output frame, warped onto it along the optical flow of the input frames (OpenCV's
DIS flow), wherever that flow is trustworthy: forward-backward consistent, inside the frame, and
photometrically right, and never more than `max_deviation` (0.05) away from the frame's own
stylization. Occluded pixels, new content and cuts take the current frame alone.
`temporal_smoothing=0` writes exactly the per-frame stylization. See `TemporalFilter`.

Frames are streamed: memory does not depend on the clip's length. Outputs are written to temporary
files beside their targets and renamed at the end, so an error or Ctrl-C leaves no partial file.

Decoding/encoding is PyAV (FFmpeg ships in its wheel), optical flow is OpenCV: both come with the
`[video]` extra, and are imported only when a video is processed.
"""

import collections
import heapq
import io
import os
import secrets
import sys
import time

import numpy as np

from image_stylization import image_io
from image_stylization.errors import DependencyError, VideoError  # noqa: F401  (re-exported)

INSTALL_HINT = 'pip install "image_stylization[video]"'
DEFAULT_CRF = 15
# Weight of the motion-compensated previous output where the flow is trustworthy, and how far
# (in [0, 1] units, per pixel and channel) it may move a pixel from its per-frame stylization.
# Chosen with bench/video.py (pan, static and cut clips; styles 7, 18, 19): the pair that meets
# both goals (flicker <= 0.6x per-frame, each frame within 0.03 mean abs of its per-frame
# stylization) on the most clips and styles, then with the least flicker. See TemporalFilter.
DEFAULT_TEMPORAL_SMOOTHING = 0.8
MAX_DEVIATION = 0.05
# Outputs encoded in one decoding pass: their styles run as one batch per frame; more outputs are
# done in further passes, so a long style list does not hold dozens of encoders at once.
MAX_OUTPUTS_PER_PASS = 4
# FFmpeg demuxers of still images: a .jpg opens as a one-frame "video"; it is refused here.
_IMAGE_FORMATS = ("image2", "_pipe")

VideoInfo = collections.namedtuple(
    "VideoInfo", "path frames width height rate rotation audio_codec duration")
VideoSummary = collections.namedtuple("VideoSummary", "outputs frames seconds")


def _require():
    """(av, cv2), or a DependencyError naming the extra that provides them."""
    try:
        import av
        import cv2
    except ImportError as e:
        raise DependencyError(f"video needs PyAV and OpenCV ({e.name} is not installed): "
                         f"{INSTALL_HINT}") from None
    return av, cv2


# ----------------------------------------------------------------------------- reading


def _open_input(path):
    """(container, video stream, audio stream or None) of `path`, or a VideoError naming it."""
    av, _ = _require()
    name = os.fspath(path)
    if os.path.isdir(name):
        raise VideoError(f"{name}: is a directory, not a video")
    if not os.path.isfile(name):
        raise VideoError(f"{name}: no such file")
    try:
        container = av.open(name, "r")
    except av.FFmpegError as e:
        raise VideoError(f"{name}: not a video file FFmpeg can read ({_reason(e)})") from None
    try:
        fmt = container.format.name or ""
        if any(tag in fmt for tag in _IMAGE_FORMATS):
            raise VideoError(f"{name}: is a still image ({fmt}), not a video")
        if not container.streams.video:
            raise VideoError(f"{name}: has no video stream")
        video = container.streams.video[0]
        if video.codec_context is None or not video.codec_context.name:
            raise VideoError(f"{name}: its video stream's codec is not supported by FFmpeg")
        audio = container.streams.audio[0] if container.streams.audio else None
        return container, video, audio
    except BaseException:
        container.close()
        raise


def _reason(error):
    return getattr(error, "strerror", None) or str(error).splitlines()[0]


def _rate(stream):
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return rate
    return 25


def probe(path):
    """What `stylize_video` keeps of a video, read from its headers and frames: a `VideoInfo`.

    `frames` is counted by decoding (exact, streamed); `rotation` is the display rotation in
    degrees (counter-clockwise, as FFmpeg reports it); `duration` is the audio stream's duration in
    seconds, from its packets (None without audio).
    """
    container, video, audio = _open_input(path)
    with container:
        frames, rotation = 0, 0
        first = end = None
        for kind, item in _events(os.fspath(path), container, video, audio):
            if kind == "video":
                if frames == 0:
                    rotation = item.rotation
                frames += 1
            elif item.pts is not None:
                t = item.pts * item.time_base
                first = t if first is None else min(first, t)
                stop = t + (item.duration or 0) * item.time_base
                end = stop if end is None else max(end, stop)
        duration = float(end - first) if first is not None else None
        return VideoInfo(os.fspath(path), frames, video.width, video.height, _rate(video),
                         rotation, audio.codec_context.name if audio else None, duration)


def check_input(path):
    """Fails fast (a VideoError) when `path` is not a readable video; reads headers only."""
    container, _, _ = _open_input(path)
    container.close()


def _swscale_flags():
    """Exact RGB <-> YUV rounding and full chroma resolution: FFmpeg's default swscale flags
    darken a 4:2:0 round trip by ~1 level of 255 (measured), these leave it unbiased."""
    from av.video.reformatter import Interpolation

    return (Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
            | Interpolation.FULL_CHR_H_INP)


def to_rgb(frame, width=None, height=None):
    """A decoded PyAV frame as uint8 RGB [H, W, 3], read with its own colour space and range."""
    return frame.to_ndarray(format="rgb24", width=width, height=height,
                            src_color_range=frame.color_range, interpolation=_swscale_flags())


def _display_matrix(frame):
    """The frame's 3x3 display matrix (FFmpeg's 9 int32, rotation and flips) or None."""
    for side in frame.side_data:
        if str(side.type).endswith("DISPLAYMATRIX") and side.buffer_size == 36:
            return [int(v) for v in np.frombuffer(memoryview(side), np.int32)]
    return None


def _events(path, container, video, audio):
    """Yields ("video", frame) and ("audio", packet) in file order; decoding errors name `path`."""
    av, _ = _require()
    video.thread_type = "AUTO"
    streams = [video] + ([audio] if audio is not None else [])
    count = 0
    try:
        for packet in container.demux(streams):
            if packet.stream.type == "video":
                for frame in packet.decode():
                    count += 1
                    yield "video", frame
            elif packet.dts is not None and packet.size:
                yield "audio", packet
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode frame {count + 1} ({_reason(e)})") from None


# ----------------------------------------------------------------------------- writing


class _Output:
    """One MP4 being written to a temporary file beside `path`, renamed there by `finish`."""

    def __init__(self, path, crf):
        self.path = os.fspath(path)
        self.crf = crf
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise VideoError(f"{self.path}: directory {directory} does not exist")
        self.tmp = os.path.join(directory,
                                f".{os.path.basename(self.path)}.{secrets.token_hex(4)}.tmp")
        try:
            # Created now, so an unwritable target fails before any decoding work.
            os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as e:
            raise VideoError(f"{self.path}: cannot write video ({e.strerror or e})") from None
        self.container = None
        self.video = self.audio = None
        self.transcodes_audio = False

    def open(self, width, height, rate, time_base, matrix, sar, audio, copy_audio):
        """Sets up the streams: H.264 video as the input's, and its audio copied or (when
        `copy_audio` is False) re-encoded to AAC."""
        av, _ = _require()
        self.container = av.open(self.tmp, "w", format="mp4")
        v = self.container.add_stream("libx264", rate=rate)
        v.width, v.height = width, height
        # x264 needs even sizes for 4:2:0; an odd-sized input keeps its size in 4:4:4 instead.
        v.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        v.time_base = time_base
        v.codec_context.time_base = time_base
        v.options = {"crf": str(self.crf), "preset": "medium"}
        v.codec_context.colorspace = 1  # AVCOL_SPC_BT709, as our RGB -> YUV conversion
        v.codec_context.color_primaries = 1
        v.codec_context.color_trc = 1
        v.codec_context.color_range = 1  # limited ("tv") range
        if sar:
            v.codec_context.sample_aspect_ratio = sar
        if matrix is not None:
            v.set_display_matrix(matrix)
        self.video, self.audio = v, None
        self.transcodes_audio = audio is not None and not copy_audio
        if audio is not None:
            self.audio = (self.container.add_stream_from_template(audio) if copy_audio
                          else self.container.add_stream("aac", rate=audio.rate))
        self.container.start_encoding()

    def write(self, rgb, pts, time_base):
        av, _ = _require()
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format=self.video.pix_fmt, dst_colorspace="itu709",
                               dst_color_range=1, interpolation=_swscale_flags())
        frame.pts, frame.time_base = pts, time_base
        self.container.mux(self.video.encode(frame))

    def write_audio(self, packet):
        """Muxes an input audio packet as it is (`write_audio_frames` when re-encoding)."""
        packet.stream = self.audio
        self.container.mux(packet)

    def write_audio_frames(self, frames):
        for frame in frames:
            self.container.mux(self.audio.encode(frame))

    def finish(self):
        self.container.mux(self.video.encode())
        if self.transcodes_audio:
            self.container.mux(self.audio.encode())
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.path)

    def abort(self):
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001  (already failing; the temp file goes anyway)
                pass
            self.container = None
        try:
            os.remove(self.tmp)
        except OSError:
            pass


# ----------------------------------------------------------------------------- temporal filter


class TemporalFilter:
    """Blends each stylized frame with the previous output, motion-compensated, where that is safe.

    For input frames I[t-1], I[t], DIS optical flow gives the backward flow b (I[t](x) ~
    I[t-1](x + b(x))) and the forward flow f. A pixel is trusted when
      - b and f agree: |b(x) + f(x + b(x))|^2 <= 0.01 (|b|^2 + |f|^2) + 0.5 (the forward-backward
        check of Sundaram et al. 2010, as in Ruder et al. 2016, "Artistic style transfer for
        videos"): occlusions and flow errors fail it;
      - x + b(x) lies inside the frame (new content entering does not);
      - the warped previous input matches the current one (a local mean of |I[t] - warp(I[t-1])|
        under 8/255): lighting changes and wrong matches fail it.
    The output is S[t] + clip(w (warp(O[t-1]) - S[t]), -m, m), with w = smoothing on trusted
    pixels (tapered at their edges) and 0 elsewhere, and m = `max_deviation`. The clip keeps every
    pixel within m of its per-frame stylization: texture that the network re-synthesizes
    differently each frame is averaged only that far, and a wrong but consistent flow cannot draw
    a ghost of more than m. When fewer than half the pixels are trusted (a cut), the filter
    resets: the output is the current stylized frame. smoothing = 0 returns S[t] unchanged.

    Why a clip and not a smaller w (measured in bench/video.py): for the same flicker reduction on
    the usual styles, it stays closer to the per-frame result, and where a style re-synthesizes
    most (The Starry Night on a pan) it bounds the deviation instead of averaging whole textures.

    Call it with each uint8 RGB input frame and the list of its float stylized frames (one per
    style, same size); it returns the list of output frames. Flow is computed once per frame and
    shared by every style, at most `flow_size` px on the longest side (then scaled up).
    """

    CUT_FRACTION = 0.5
    PHOTOMETRIC_THRESHOLD = 8.0  # in 0..255 gray levels, after a local mean

    def __init__(self, smoothing=DEFAULT_TEMPORAL_SMOOTHING, max_deviation=MAX_DEVIATION,
                 flow_size=640, preset="fast"):
        smoothing = float(smoothing)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"temporal_smoothing must be in [0, 1), got {smoothing}")
        if max_deviation is not None and not max_deviation > 0:
            raise ValueError(f"max_deviation must be > 0 (or None: no limit), got "
                             f"{max_deviation}")
        self.smoothing = smoothing
        self.max_deviation = max_deviation
        self.flow_size = flow_size
        self.preset = preset  # DIS preset: ultrafast, fast or medium (measured: fast is
        # as good as medium here at a third of the cost)
        self._dis = None
        self.reset()

    def reset(self):
        self._gray = None
        self._outputs = None
        self.last_trusted = None  # fraction of trusted pixels at the last frame (for benches)

    def __call__(self, frame, stylized):
        stylized = [np.asarray(s, np.float32) for s in stylized]
        if self.smoothing == 0.0:
            return stylized
        _, cv2 = _require()
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        outputs = stylized
        if (self._gray is not None and self._gray.shape == gray.shape
                and len(self._outputs) == len(stylized)):
            weight, map_x, map_y = self._weight(cv2, self._gray, gray)
            if weight is not None:
                outputs = []
                for prev, cur in zip(self._outputs, stylized):
                    warped = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                    change = weight[:, :, None] * (warped - cur)
                    if self.max_deviation is not None:
                        np.clip(change, -self.max_deviation, self.max_deviation, out=change)
                    outputs.append(cur + change)
        self._gray, self._outputs = gray, outputs
        return outputs

    @staticmethod
    def _grid(h, w):
        return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def _weight(self, cv2, prev, cur):
        """(weight [H, W] or None for a cut, map_x, map_y) for warping frame t-1 onto frame t.

        Flow and trust are computed at most `flow_size` px on the longest side; only the weight
        and the warp maps are scaled up to the frame.
        """
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(
                getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{self.preset.upper()}"))
        h, w = cur.shape
        if self.flow_size and max(h, w) > self.flow_size:
            scale = self.flow_size / max(h, w)
            size = (max(8, round(w * scale)), max(8, round(h * scale)))
            prev = cv2.resize(prev, size, interpolation=cv2.INTER_AREA)
            cur = cv2.resize(cur, size, interpolation=cv2.INTER_AREA)
        sh, sw = cur.shape
        backward = self._dis.calc(cur, prev, None)
        forward = self._dis.calc(prev, cur, None)
        grid_x, grid_y = self._grid(sh, sw)
        map_x = grid_x + backward[..., 0]
        map_y = grid_y + backward[..., 1]
        inside = (map_x >= 0) & (map_x <= sw - 1) & (map_y >= 0) & (map_y <= sh - 1)
        forward_there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        bx, by = backward[..., 0], backward[..., 1]
        fx, fy = forward_there[..., 0], forward_there[..., 1]
        error = (bx + fx) ** 2 + (by + fy) ** 2
        magnitude = bx * bx + by * by + fx * fx + fy * fy
        consistent = error <= 0.01 * magnitude + 0.5
        warped = cv2.remap(prev.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        residual = cv2.GaussianBlur(np.abs(cur.astype(np.float32) - warped), (0, 0), 2.0)
        trusted = (inside & consistent & (residual < self.PHOTOMETRIC_THRESHOLD))
        trusted = trusted.astype(np.float32)
        self.last_trusted = float(trusted.mean())
        if self.last_trusted < self.CUT_FRACTION:
            return None, None, None
        # Taper at the edges of trusted regions so no seam shows; untrusted pixels stay at 0.
        weight = self.smoothing * trusted * cv2.GaussianBlur(trusted, (0, 0), 1.5)
        if (sh, sw) != (h, w):
            weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)
            backward = cv2.resize(backward, (w, h), interpolation=cv2.INTER_LINEAR)
            grid_x, grid_y = self._grid(h, w)
            map_x = grid_x + backward[..., 0] * (w / sw)
            map_y = grid_y + backward[..., 1] * (h / sh)
        return weight, map_x, map_y


# ----------------------------------------------------------------------------- stylizing


def frame_stylizer(styles, model=None, max_size=None, strength=1.0, preserve_color=False,
                   jit_compile=False):
    """The per-frame callable `stylize_video` runs by default: uint8 frame -> list of float frames.

    It calls `stylize.stylize` on each frame with these arguments (one result per style of a
    list, one for a blend), so a frame of the video is exactly the photo API's result for it.
    Any callable with the same contract can be given to `stylize_video(stylizer=...)`.
    """
    from image_stylization.stylize import load_model, resolve_styles, style_names_of, stylize

    model = model if model is not None else load_model()
    selection = resolve_styles(styles, style_names_of(model))  # fails now, not at frame 1
    single = isinstance(styles, dict) or not isinstance(styles, (list, tuple))

    def run(frame):
        # uint8 -> float exactly as image_io.load_image does, so to_uint8 of the float result is
        # the uint8 result of stylize() on the frame.
        out = stylize(frame.astype(np.float32) / 255.0, styles, model=model, max_size=max_size,
                      strength=strength, preserve_color=preserve_color, jit_compile=jit_compile)
        return [out] if single else out

    run.num_outputs = 1 if isinstance(selection, dict) else len(selection)
    return run


def _as_frames(outputs, height, width):
    """The stylizer's results as float32 [height, width, 3] (a smaller result is scaled up)."""
    _, cv2 = _require()
    frames = []
    for out in outputs:
        a = np.asarray(out)
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"the stylizer returned an array of shape {a.shape}; "
                             f"expected [H, W, 3]")
        if a.shape[:2] != (height, width):
            a = np.clip(cv2.resize(a, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
        frames.append(a)
    return frames


def stylized_frames(frames, stylizer, temporal_smoothing=DEFAULT_TEMPORAL_SMOOTHING,
                    max_deviation=MAX_DEVIATION, flow_size=640):
    """Yields, for each uint8 RGB frame of the iterable `frames`, the list of its uint8 outputs.

    The streaming core of `stylize_video`, without files: `stylizer(frame)` gives the per-frame
    results, `TemporalFilter(temporal_smoothing)` steadies them. With temporal_smoothing 0 the
    outputs are `to_uint8(stylizer(frame))`, exactly.
    """
    temporal = TemporalFilter(temporal_smoothing, max_deviation, flow_size=flow_size)
    for frame in frames:
        yield _stylize_frame(stylizer, temporal, np.ascontiguousarray(frame))


def _stylize_frame(stylizer, temporal, frame):
    """The uint8 outputs of one uint8 frame: per-frame results, then the temporal filter."""
    outputs = _as_frames(stylizer(frame), frame.shape[0], frame.shape[1])
    return [image_io.to_uint8(o) for o in temporal(frame, outputs)]


class Progress:
    """Prints "frame 120/300 (40%), 3.20 frames/s, ETA 0:00:56" at most every `every` seconds
    (default: 0.5 s on a terminal, rewriting one line; 10 s otherwise, one line each)."""

    def __init__(self, stream=None, every=None, prefix=""):
        stream = stream if stream is not None else sys.stderr
        self.stream = stream
        tty = hasattr(stream, "isatty") and stream.isatty()
        self.every = every if every is not None else (0.5 if tty else 10.0)
        self.end = "\r" if tty else "\n"
        self.prefix = prefix
        self.start = self.last = None

    def __call__(self, done, total):
        now = time.perf_counter()
        if self.start is None:
            self.start = self.last = now
            return
        finished = total and done >= total
        if now - self.last < self.every and not finished:
            return
        self.last = now
        rate = (done - 1) / max(now - self.start, 1e-9)  # the first frame includes warm-up
        text = f"{self.prefix}frame {done}"
        if total:
            text += f"/{total} ({100 * done // total}%)"
        text += f", {rate:.2f} frames/s"
        if total and rate > 0 and not finished:
            eta = int(round((total - done) / rate))
            text += f", ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        print(text, end=self.end if not finished else "\n", file=self.stream, flush=True)


def _estimated_frames(video):
    if video.frames:
        return int(video.frames)
    if video.duration is not None and video.average_rate:
        return int(round(float(video.duration * video.time_base * video.average_rate)))
    return 0


def stylize_video(path, styles, output_path, model=None, stylizer=None,
                  temporal_smoothing=DEFAULT_TEMPORAL_SMOOTHING, crf=DEFAULT_CRF, max_size=None,
                  strength=1.0, preserve_color=False, jit_compile=False, progress=None,
                  max_deviation=MAX_DEVIATION, flow_size=640):
    """Stylizes the video at `path` and writes one MP4 per output; returns a `VideoSummary`.

    Args:
      path: the input video (any container and codec FFmpeg reads).
      styles: as for `stylize`: an index or name (one output), a list (one output each), or a
        dict {style: weight} (one blend). None when `stylizer` is given.
      output_path: the output .mp4 path, or a list of them, one per output (a list of styles).
      model: the transformer (default: the bundled 26-style model).
      stylizer: instead of styles/model: a callable taking a uint8 RGB frame [H, W, 3] and
        returning a list of images (float in [0, 1] or uint8, [h, w, 3]; resized to the frame's
        size if smaller), one per output path. `frame_stylizer` builds the default one.
      temporal_smoothing: in [0, 1): weight of the motion-compensated previous output where the
        optical flow is trustworthy (see `TemporalFilter`). 0: frame by frame, exactly.
      crf: H.264 constant rate factor (0..51; lower is better; 15 is visually lossless).
      max_size: stylize at most this long side (then scale back to the frame's size). None or 0:
        full size.
      strength, preserve_color, jit_compile: as for `stylize`.
      progress: a callable (frames done, frames expected or 0), e.g. `Progress()`.
      max_deviation: how far smoothing may move a pixel (per channel, in [0, 1]) from its
        per-frame stylization; None: no limit (stronger smoothing of styles that flicker most,
        at the cost of averaged texture).
      flow_size: longest side the optical flow is computed at.
    """
    av, _ = _require()
    if not isinstance(crf, (int, np.integer)) or isinstance(crf, bool) or not 0 <= crf <= 51:
        raise VideoError(f"crf must be an integer in 0..51, got {crf!r}")
    TemporalFilter(temporal_smoothing, max_deviation)  # validates before any work
    paths = [output_path] if isinstance(output_path, (str, os.PathLike)) else list(output_path)
    if not paths:
        raise VideoError("no output path given")
    if stylizer is not None:
        if styles is not None:
            raise ValueError("give styles or a stylizer, not both")
        passes = [(stylizer, paths)]
    else:
        from image_stylization.stylize import load_model

        model = model if model is not None else load_model()
        groups = [styles]
        if isinstance(styles, (list, tuple)):
            groups = [list(styles[i:i + MAX_OUTPUTS_PER_PASS])
                      for i in range(0, len(styles), MAX_OUTPUTS_PER_PASS)]
        runs = [frame_stylizer(group, model, max_size=max_size, strength=strength,
                               preserve_color=preserve_color, jit_compile=jit_compile)
                for group in groups]
        expected = sum(run.num_outputs for run in runs)
        if expected != len(paths):
            raise ValueError(f"{expected} outputs (styles) for {len(paths)} output paths")
        passes, offset = [], 0
        for run in runs:
            passes.append((run, paths[offset:offset + run.num_outputs]))
            offset += run.num_outputs
    _open_input(path)[0].close()  # a bad input fails before any output file is created
    start = time.perf_counter()
    frames, outputs = 0, []
    try:
        # Every temporary file is created now: an unwritable target fails before any work.
        outputs = [_Output(p, crf) for p in paths]
        offset = 0
        for k, (run, targets) in enumerate(passes, start=1):
            if progress is not None and len(passes) > 1 and hasattr(progress, "prefix"):
                progress.prefix = f"[pass {k}/{len(passes)}] "
                progress.start = None
            temporal = TemporalFilter(temporal_smoothing, max_deviation, flow_size=flow_size)
            frames = _one_pass(av, path, run, outputs[offset:offset + len(targets)], temporal,
                               progress)
            offset += len(targets)
    finally:
        for out in outputs:
            out.abort()  # a no-op for a finished output (its temporary file was renamed)
    return VideoSummary([os.fspath(p) for p in paths], frames, time.perf_counter() - start)


def _can_copy_audio(av, path):
    """Whether MP4 holds the audio packets of `path` as they are. Tried in memory with the first
    packet: some codecs (PCM with an unordered channel layout) are refused only once data comes."""
    container, _, audio = _open_input(path)
    with container:
        if audio is None:
            return False
        packet = next((p for p in container.demux(audio) if p.size), None)
        try:
            with av.open(io.BytesIO(), "w", format="mp4") as trial:
                stream = trial.add_stream_from_template(audio)
                trial.start_encoding()
                if packet is not None:
                    packet.stream = stream
                    trial.mux(packet)
            return True
        except (av.FFmpegError, ValueError):
            return False


class _Timestamps:
    """Gives each frame, in display order, the smallest of the next few timestamps.

    Decoders return frames in display order, but some files (AVI with B-frames, which has no
    presentation times) label them with timestamps shuffled within the reordering depth. Taking
    the smallest pending timestamp puts them back in order; a correctly labelled file keeps
    every frame's own timestamp. Frames without one continue the last at the frame rate.
    """

    DEPTH = 4

    def __init__(self, step):
        self.step = step
        self.heap = []
        self.highest = self.last = None

    def push(self, pts):
        if pts is None:
            pts = 0 if self.highest is None else self.highest + self.step
        self.highest = pts if self.highest is None else max(self.highest, pts)
        heapq.heappush(self.heap, pts)

    def pop(self):
        pts = heapq.heappop(self.heap)
        if self.last is not None and pts <= self.last:
            pts = self.last + 1  # the encoder needs strictly increasing timestamps
        self.last = pts
        return pts


def _write_frames(outputs, images, pts, time_base):
    for out, image in zip(outputs, images):
        out.write(image, pts, time_base)


def _write_audio(outputs, audio, packet):
    """Copies `packet` into every output, or decodes it once for outputs that re-encode it."""
    if not outputs[0].transcodes_audio:  # every output of a pass is set up alike
        for out in outputs:
            out.write_audio(packet)
        return
    frames = audio.decode(packet)
    for out in outputs:
        out.write_audio_frames(frames)


def _one_pass(av, path, stylizer, outputs, temporal, progress):
    name = os.fspath(path)
    try:
        container, video, audio = _open_input(path)
        with container:
            total = _estimated_frames(video)
            pending_audio = []  # audio packets read before the first video frame opens outputs
            copy_audio = audio is not None and _can_copy_audio(av, path)
            count, size, time_base = 0, None, video.time_base
            stamps = _Timestamps(max(1, int(round(1 / (_rate(video) * time_base)))))
            waiting = collections.deque()  # stylized frames waiting for their timestamp
            for kind, item in _events(name, container, video, audio):
                if kind == "audio":
                    if size is None:
                        pending_audio.append(item)
                    else:
                        _write_audio(outputs, audio, item)
                    continue
                frame = item
                if size is None:
                    size = (frame.width, frame.height)
                    for out in outputs:
                        out.open(frame.width, frame.height, _rate(video), time_base,
                                 _display_matrix(frame), video.codec_context.sample_aspect_ratio,
                                 audio, copy_audio)
                    for packet in pending_audio:
                        _write_audio(outputs, audio, packet)
                    pending_audio = []
                rgb = to_rgb(frame, size[0], size[1])
                stamps.push(frame.pts)
                images = _stylize_frame(stylizer, temporal, rgb)
                if len(images) != len(outputs):
                    raise ValueError(f"the stylizer returned {len(images)} images for "
                                     f"{len(outputs)} output paths")
                waiting.append(images)
                while len(waiting) > _Timestamps.DEPTH:
                    _write_frames(outputs, waiting.popleft(), stamps.pop(), time_base)
                count += 1
                if progress is not None:
                    progress(count, max(total, count))
            if count == 0:
                raise VideoError(f"{name}: its video stream has no frames")
            while waiting:
                _write_frames(outputs, waiting.popleft(), stamps.pop(), time_base)
            if outputs[0].transcodes_audio:
                _write_audio(outputs, audio, None)  # the decoder's last frames
        for out in outputs:
            out.finish()
        return count
    except av.FFmpegError as e:
        raise VideoError(f"{name}: cannot write the stylized video ({_reason(e)})") from None
