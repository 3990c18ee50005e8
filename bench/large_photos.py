"""Large photos: tiled stylization time and peak memory at 12, 24 and 48 Mpix, beside the
whole-image rate, and the 8000x6000 command line run.

Not a test; run it by hand, at normal priority, one big bench at a time (it needs ~3 GB):

    python bench/large_photos.py                                  # ~10 min on 2 cores
    python bench/large_photos.py --sizes=12 --sections=whole,tiled
    python bench/large_photos.py --checkpoint=checkpoints/paper_6styles --memory_budget_mb=4096

Sections (`--sections`):
- whole: `stylize()` on a 1600x1200 photo (1.9 Mpix, which fits the default memory budget at
  once), the reference rate: median of 3 warm calls, in a fresh process. Measured before,
  between and after the tiled runs; the table uses the median of those.
- tiled: each size in a fresh process: read the JPEG as the command line does (uint8), one
  warm-up call on a small photo, `stylize(..., max_size=0)` (tiled: the photo does not fit the
  budget at once), PNG write. Time per Mpix of the stylize call against the whole-image rate
  (the issue's goal: <= 2.5x), and the process's peak RSS.
- cli: `image_stylization_transform --max_size=0` on the largest size, as a user runs it:
  wall time, peak RSS of the process (goal: <= 3 GB), output size checked.

Photos are a real photo upscaled (bicubic) to each size, written to a temporary folder and
deleted: `--photo` (default: the first of ../shared/data/content, else the package's demo
photo). Wall time on a loaded machine varies; CPU time (user + system of the process) varies
less, and both are reported.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {12: (4000, 3000), 24: (5657, 4243), 48: (8000, 6000)}  # Mpix -> (width, height)
WHOLE = (1600, 1200)
STYLE = 7


def _default_photo():
    content = os.path.join(REPO, os.pardir, "shared", "data", "content")
    if os.path.isdir(content):
        names = sorted(f for f in os.listdir(content) if f.lower().endswith(".jpg"))
        if names:
            return os.path.join(content, names[0])
    return os.path.join(REPO, "image_stylization", "assets", "astronaut.jpg")


def _make_photo(source, size, directory):
    from PIL import Image

    path = os.path.join(directory, f"photo_{size[0]}x{size[1]}.jpg")
    if not os.path.exists(path):
        with Image.open(source) as img:
            img.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def _spawn(args):
    """Runs a command; returns (its stdout, wall s, cpu s, peak RSS MB) from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # cumulative; see _rusage_delta
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{err[-3000:]}")
    return out, wall, usage


class _Children:
    """Per-child CPU time and peak RSS: RUSAGE_CHILDREN accumulates CPU over children and
    keeps the largest child's peak, so each child's CPU is a difference; its peak RSS comes
    from the worker's own report."""

    def __init__(self):
        self.last = resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(self, usage):
        cpu = (usage.ru_utime - self.last.ru_utime) + (usage.ru_stime - self.last.ru_stime)
        self.last = usage
        return cpu


# ----------------------------------------------------------------------------- workers


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_whole(args):
    import numpy as np

    from image_stylization import image_io
    from image_stylization.stylize import load_model, stylize

    model = load_model(args.checkpoint)
    image = image_io.load_image(args.input, keep_uint8=True)
    stylize(image[:256, :256], STYLE, model=model)
    times, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = stylize(image, STYLE, model=model, max_size=0, memory_budget_mb=None)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert np.asarray(out).shape == image.shape
    print(json.dumps({"stylize_s": statistics.median(times), "times": times,
                      "cpu_s": statistics.median(cpu), "rss_mb": _rss_mb()}))


def worker_tiled(args):
    from image_stylization import image_io, tiled
    from image_stylization.stylize import load_model, stylize

    model = load_model(args.checkpoint)
    small = image_io.load_image(os.path.join(REPO, "image_stylization", "assets", "astronaut.jpg"),
                                keep_uint8=True)
    stylize(small, STYLE, model=model)
    start = time.perf_counter()
    image = image_io.load_image(args.input, keep_uint8=True)
    read = time.perf_counter() - start
    h, w = image.shape[:2]
    runner = tiled.TiledRunner(model, image, args.memory_budget_mb * tiled.MB)
    the_plan = runner.plan()
    start, start_cpu = time.perf_counter(), time.process_time()
    out = stylize(image, STYLE, model=model, max_size=0, memory_budget_mb=args.memory_budget_mb)
    run, run_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    del image
    path = os.path.join(args.output_dir, "out.png")
    start = time.perf_counter()
    image_io.save_image(out, path)
    write = time.perf_counter() - start
    os.remove(path)
    print(json.dumps({"read_s": read, "stylize_s": run, "stylize_cpu_s": run_cpu,
                      "write_s": write, "rss_mb": _rss_mb(),
                      "passes": len(the_plan.passes), "work": the_plan.recompute,
                      "planned_peak_mb": the_plan.peak_bytes / tiled.MB, "size": [w, h]}))


# ----------------------------------------------------------------------------- driver


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="whole,tiled,cli")
    parser.add_argument("--sizes", default="12,24,48", help="Mpix, of 12, 24, 48")
    parser.add_argument("--checkpoint", default=None, help="default: the bundled 26-style model")
    parser.add_argument("--memory_budget_mb", type=int, default=None,
                        help="default: the package's default")
    parser.add_argument("--photo", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--input", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_budget_mb is None:
        from image_stylization.tiled import DEFAULT_MEMORY_BUDGET_MB

        args.memory_budget_mb = DEFAULT_MEMORY_BUDGET_MB
    if args.worker:
        return {"whole": worker_whole, "tiled": worker_tiled}[args.worker](args)

    sections = set(args.sections.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    photo = args.photo or _default_photo()
    me = [sys.executable, os.path.abspath(__file__), f"--memory_budget_mb={args.memory_budget_mb}"]
    if args.checkpoint:
        me.append(f"--checkpoint={args.checkpoint}")
    children = _Children()
    print(f"photo: {photo} upscaled; model: {args.checkpoint or 'bundled tf_stylize_26'}; "
          f"memory budget {args.memory_budget_mb} MB; style {STYLE}", flush=True)
    with tempfile.TemporaryDirectory(prefix="large_photos_") as tmp:
        whole_runs = []

        def whole():
            if "whole" not in sections:
                return
            path = _make_photo(photo, WHOLE, tmp)
            out, wall, usage = _spawn(me + ["--worker=whole", f"--input={path}"])
            children.cpu(usage)
            r = json.loads(out.strip().splitlines()[-1])
            mpix = WHOLE[0] * WHOLE[1] / 1e6
            whole_runs.append((r["stylize_s"] / mpix, r["cpu_s"] / mpix))
            print(f"  whole image {WHOLE[0]}x{WHOLE[1]}: {r['stylize_s']:.2f} s "
                  f"({r['stylize_s'] / mpix:.2f} s/Mpix, CPU {r['cpu_s'] / mpix:.2f} s/Mpix; runs "
                  f"{', '.join(f'{t:.2f}' for t in r['times'])}), peak RSS {r['rss_mb']:.0f} MB",
                  flush=True)

        rows = []
        whole()
        if "tiled" in sections:
            for mp in sizes:
                size = SIZES[mp]
                path = _make_photo(photo, size, tmp)
                out, wall, usage = _spawn(me + ["--worker=tiled", f"--input={path}",
                                                f"--output_dir={tmp}"])
                r = json.loads(out.strip().splitlines()[-1])
                r["cpu_s"] = children.cpu(usage)
                r["mp"] = size[0] * size[1] / 1e6
                rows.append(r)
                print(f"  tiled {size[0]}x{size[1]}: read {r['read_s']:.1f} s, stylize "
                      f"{r['stylize_s']:.1f} s (CPU {r['stylize_cpu_s']:.1f} s), write "
                      f"{r['write_s']:.1f} s, process CPU {r['cpu_s']:.0f} s, peak RSS "
                      f"{r['rss_mb']:.0f} MB ({r['passes']} "
                      f"passes, {r['work']:.2f}x the whole-image multiply-adds)", flush=True)
                whole()
        cli = None
        if "cli" in sections:
            size = SIZES[max(sizes)]
            path = _make_photo(photo, size, tmp)
            outdir = os.path.join(tmp, "cli")
            cmd = [sys.executable, "-m", "image_stylization.image_stylization_transform",
                   f"--input_image={path}", f"--output_dir={outdir}", "--max_size=0",
                   f"--which_styles=[{STYLE}]", f"--memory_budget_mb={args.memory_budget_mb}"]
            if args.checkpoint:
                cmd.append(f"--checkpoint={args.checkpoint}")
            rss_file = os.path.join(tmp, "rss")
            _, wall, usage = _spawn(["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd)
            cpu = children.cpu(usage)
            from PIL import Image

            with Image.open(os.path.join(outdir, f"photo_{size[0]}x{size[1]}_{STYLE}.png")) as im:
                out_size = im.size
            cli = (size, wall, cpu, int(open(rss_file).read().split()[-1]) / 1024, out_size)
            print(f"  cli {size[0]}x{size[1]}: {wall:.0f} s wall, {cpu:.0f} s CPU, peak RSS "
                  f"{cli[3]:.0f} MB, output {out_size[0]}x{out_size[1]}", flush=True)

    print()
    rate = statistics.median(w for w, _ in whole_runs) if whole_runs else None
    rate_cpu = statistics.median(c for _, c in whole_runs) if whole_runs else None
    if rate:
        print(f"whole-image rate: {rate:.2f} s/Mpix, CPU {rate_cpu:.2f} s/Mpix (median of "
              f"{len(whole_runs)} processes, {WHOLE[0]}x{WHOLE[1]})")
    if rows:
        print("| photo | stylize s | s/Mpix | x whole-image | CPU s/Mpix | x whole-image CPU | "
              "read + write s | peak RSS MB | work |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            per, per_cpu = r["stylize_s"] / r["mp"], r["stylize_cpu_s"] / r["mp"]
            ratio = f"{per / rate:.2f}x" if rate else "-"
            ratio_cpu = f"{per_cpu / rate_cpu:.2f}x" if rate_cpu else "-"
            print(f"| {r['size'][0]}x{r['size'][1]} ({r['mp']:.0f} Mpix) | {r['stylize_s']:.1f} | "
                  f"{per:.2f} | {ratio} | {per_cpu:.2f} | {ratio_cpu} | "
                  f"{r['read_s'] + r['write_s']:.1f} | {r['rss_mb']:.0f} | {r['work']:.2f}x |")
    if cli:
        size, wall, cpu, rss, out_size = cli
        print(f"CLI {size[0]}x{size[1]} --max_size=0: {wall:.0f} s, peak RSS {rss:.0f} MB "
              f"({'<=' if rss <= 3072 else '>'} 3 GB), output {out_size[0]}x{out_size[1]}")


if __name__ == "__main__":
    main()
