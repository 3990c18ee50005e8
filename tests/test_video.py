"""Video: what an output keeps of its input, the temporal filter, bad input, interrupted runs.

Clips are made here with PyAV (a few frames of 64x48 with sound), so every test is quick.
"""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from PIL import Image

av = pytest.importorskip(
    "av", reason="video tests need PyAV: pip install 'image_stylization[video]'")
cv2 = pytest.importorskip(
    "cv2", reason="video tests need OpenCV: pip install 'image_stylization[video]'")

from image_stylization import checkpoint, cli, video  # noqa: E402
from image_stylization import image_stylization_transform as transform  # noqa: E402
from image_stylization.errors import DependencyError, VideoError  # noqa: E402
from image_stylization.stylize import demo_image_path, stylize  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
PAN = (3, 1)  # px per frame the test clips' content moves by (x, y)


@pytest.fixture(scope="module")
def model(model_dir):
    return checkpoint.load_model(model_dir)


def scene(frames, size=(64, 48), pan=PAN):
    """Frames of the bundled photo seen through a window panning by `pan` px per frame."""
    w, h = size
    photo = np.asarray(Image.open(demo_image_path()).convert("RGB").resize((160, 160)))
    return [np.ascontiguousarray(photo[40 + t * pan[1]:40 + t * pan[1] + h,
                                       30 + t * pan[0]:30 + t * pan[0] + w])
            for t in range(frames)]


def make_clip(path, frames=6, size=(64, 48), rate=12, audio="aac", rotation=0, fmt=None,
              pix_fmt="yuv420p"):
    """An H.264 clip of `scene` with a 440 Hz tone as long as the video (or no sound)."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream(audio, rate=16000) if audio else None
        for t, image in enumerate(scene(frames, size)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            for start in range(0, 16000 * frames // rate, 1024):
                t = np.arange(start, start + 1024) / 16000
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return str(path)


def decoded(path):
    with av.open(str(path)) as c:
        return [video.to_rgb(f) for f in c.decode(video=0)]


def audio_packets(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_outputs_keep_frames_size_rate_rotation_and_sound(tmp_path, model, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", rotation=90)
    monkeypatch.setattr(video, "MAX_OUTPUTS_PER_PASS", 1)  # two styles: two decoding passes
    outs = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    summary = video.stylize_video(clip, [0, 2], outs, model=model)
    assert summary.frames == 6 and summary.outputs == outs
    source = video.probe(clip)
    assert (source.frames, source.width, source.height, source.rate, source.rotation) == (
        6, 64, 48, 12, 90)
    for out in outs:
        info = video.probe(out)
        assert (info.frames, info.width, info.height, info.rate, info.rotation) == (
            6, 64, 48, 12, 90)
        assert info.audio_codec == "aac" and info.duration == pytest.approx(source.duration)
        assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded
    a, b = decoded(outs[0]), decoded(outs[1])
    assert np.abs(a[3].astype(int) - b[3]).mean() > 5  # two styles, two different videos
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "b.mp4", "clip.mp4"]  # no temporary left


@pytest.mark.parametrize("styles", [[0, 2], {0: 0.3, 1: 0.7}])
def test_smoothing_zero_is_per_frame_stylization_exactly(tmp_path, model, styles):
    frames = decoded(make_clip(tmp_path / "clip.mp4", audio=None))
    run = video.frame_stylizer(styles, model)
    got = list(video.stylized_frames(frames, run, temporal_smoothing=0))
    for frame, outputs in zip(frames, got):
        expected = stylize(frame, styles, model=model)
        expected = expected if isinstance(expected, list) else [expected]
        assert len(outputs) == len(expected)
        for o, e in zip(outputs, expected):
            assert o.dtype == np.uint8 and np.array_equal(o, e)


def test_frames_go_through_the_file_unchanged_but_for_h264_rounding(tmp_path):
    """What stylize_video writes is what the stylizer (here: none) gave, up to H.264's rounding
    (CRF 0, 4:2:0 chroma): the RGB <-> YUV conversions shift no colour. With the smoothing-0
    test above, this makes the written video the per-frame stylization."""
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    frames = decoded(clip)
    video.stylize_video(clip, None, tmp_path / "same.mp4", stylizer=lambda f: [f],
                        temporal_smoothing=0, crf=0)
    for frame, w in zip(frames, decoded(tmp_path / "same.mp4"), strict=True):
        diff = w.astype(float) - frame
        assert np.abs(diff).mean() < 1.5 and abs(diff.mean()) < 0.3


def warp_back(image, t_motion):
    """`image` shifted so that content that moved by `t_motion` px is back in place."""
    dx, dy = t_motion
    return np.roll(image, (dy, dx), axis=(0, 1))


def test_temporal_filter_reduces_flicker_without_ghosting():
    frames = scene(10, size=(96, 64))
    rng = np.random.default_rng(0)
    # A "stylization" that follows the content, plus texture that changes every frame.
    stylized = [[np.clip(f.astype(np.float32) / 255 + rng.normal(0, 0.05, f.shape), 0, 1)
                 .astype(np.float32)] for f in frames]
    temporal = video.TemporalFilter()  # the defaults
    outputs = [temporal(f, s)[0] for f, s in zip(frames, stylized)]
    assert np.array_equal(outputs[0], stylized[0][0])  # nothing to blend with yet

    def change(seq):  # motion-compensated change between consecutive frames, interior only
        return np.mean([np.abs(seq[t] - warp_back(seq[t - 1], (-PAN[0], -PAN[1])))[
            10:-10, 10:-10].mean() for t in range(1, len(seq))])

    per_frame = [s[0] for s in stylized]
    assert temporal.last_trusted > 0.8
    assert change(outputs) < 0.7 * change(per_frame)
    deviation = max(np.abs(o - s).max() for o, s in zip(outputs, per_frame))
    assert deviation <= video.MAX_DEVIATION + 1e-6  # every pixel, not only on average


def test_temporal_filter_blends_static_frames_and_resets_at_a_cut():
    frame = scene(1, size=(96, 64))[0]
    a = np.full((64, 96, 3), 0.2, np.float32)
    b = np.full((64, 96, 3), 0.6, np.float32)
    unlimited = video.TemporalFilter(0.4, max_deviation=None)
    unlimited(frame, [a])
    # Same input twice: zero flow, every pixel trusted: b + 0.4 (a - b) in the interior.
    out = unlimited(frame, [b])[0]
    np.testing.assert_allclose(out[5:-5, 5:-5], 0.6 + 0.4 * (0.2 - 0.6), atol=1e-3)
    temporal = video.TemporalFilter(0.4, max_deviation=0.05)
    temporal(frame, [a])
    out = temporal(frame, [b])[0]
    np.testing.assert_allclose(out[5:-5, 5:-5], 0.6 - 0.05, atol=1e-6)  # the limit
    other = np.ascontiguousarray(255 - frame[::-1, ::-1])  # a different shot
    out = temporal(other, [a])[0]
    assert temporal.last_trusted < video.TemporalFilter.CUT_FRACTION
    assert np.array_equal(out, a)  # a clean reset: the current frame alone
    off = video.TemporalFilter(0)
    off(frame, [a])
    assert np.array_equal(off(frame, [b])[0], b)  # smoothing 0: the per-frame result
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        video.TemporalFilter(1.0)
    with pytest.raises(ValueError, match="max_deviation"):
        video.TemporalFilter(0.5, max_deviation=0)


def test_max_size_result_is_scaled_back_to_the_frame(model):
    frames = scene(2)
    run = video.frame_stylizer(1, model, max_size=32)
    assert stylize(frames[0], 1, model=model, max_size=32).shape == (24, 32, 3)
    for outputs in video.stylized_frames(frames, run):
        assert outputs[0].shape == (48, 64, 3)


def test_audio_re_encoded_only_when_mp4_cannot_hold_it(tmp_path):
    # AVI + 8-bit PCM: MP4 does not take the PCM (the trial fails), so it becomes AAC; AVI's
    # B-frame timestamps come shuffled and are put back in order.
    clip = make_clip(tmp_path / "clip.avi", fmt="avi", audio="pcm_u8")
    out = tmp_path / "out.mp4"
    video.stylize_video(clip, None, out, stylizer=lambda f: [f])
    source, info = video.probe(clip), video.probe(out)
    assert (info.frames, info.rate, info.audio_codec) == (6, 12, "aac")
    assert info.duration == pytest.approx(source.duration, abs=0.1)  # AAC adds a priming frame


def test_odd_sized_video_keeps_its_size(tmp_path):
    clip = make_clip(tmp_path / "odd.mp4", size=(63, 47), pix_fmt="yuv444p", audio=None)
    video.stylize_video(clip, None, tmp_path / "out.mp4", stylizer=lambda f: [f])
    info = video.probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frames, info.audio_codec) == (63, 47, 6, None)


def _no_video_stream(path):
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode())


def _no_frames(path):
    """A video stream with no frame in it (as a recording cut off at once leaves)."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a video"), "not a video file FFmpeg can read"),
    (lambda p: Image.new("RGB", (64, 48)).save(p, format="PNG"), "is a still image"),
    (_no_video_stream, "has no video stream"),
    (_no_frames, "its video stream has no frames"),
    (None, "no such file"),
])
def test_bad_input_one_error_no_output(tmp_path, model, make, message):
    path = tmp_path / "input.mp4"
    if make is not None:
        make(path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VideoError, match=message) as e:
        video.stylize_video(path, 0, out / "o.mp4", model=model)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    assert os.listdir(out) == []


def test_unwritable_output_fails_before_decoding(tmp_path, model):
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    (tmp_path / "file").write_text("")
    calls = []
    with pytest.raises(VideoError, match="does not exist"):
        video.stylize_video(clip, None, tmp_path / "file" / "o.mp4",
                            stylizer=lambda f: calls.append(1) or [f])
    assert not calls


def test_interrupt_or_failure_leaves_no_partial_file(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    out.mkdir()
    for error in (KeyboardInterrupt, RuntimeError):
        seen = []

        def stylizer(frame, error=error):
            seen.append(frame)
            if len(seen) == 3:
                raise error()
            return [frame]

        with pytest.raises(error):
            video.stylize_video(clip, None, [out / "a.mp4"], stylizer=stylizer)
        assert os.listdir(out) == []


def test_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(DependencyError, match=r"image_stylization\[video\]"):
        video.stylize_video(tmp_path / "clip.mp4", 0, tmp_path / "o.mp4")


def test_progress_prints_rate_and_eta():
    stream = io.StringIO()
    progress = video.Progress(stream, every=0)
    for done in range(1, 5):
        progress(done, 4)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("frame 2/4 (50%)") and "frames/s, ETA 0:00:" in lines[0]
    assert lines[-1].startswith("frame 4/4 (100%)") and "ETA" not in lines[-1]


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "image_stylization.image_stylization_transform", *args],
        capture_output=True, text=True, env=env, timeout=180,
    )


def test_main_writes_one_video_per_style(tmp_path, model_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "walk.mp4")
    argv = ["transform", f"--checkpoint={model_dir}", "--input_video=walk.mp4", "--output_dir=o",
            "--which_styles=[2,0]", "--video_crf=20"]
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        transform.main(FLAGS(argv))
    assert sorted(os.listdir(tmp_path / "o")) == ["walk_0.mp4", "walk_2.mp4"]
    out, err = capsys.readouterr()
    assert "frames/s" in err and "6 frames" in out
    assert video.probe(tmp_path / "o" / "walk_2.mp4").frames == 6


def test_main_blend_name_and_max_size_in_process(tmp_path, model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "clip.mp4", frames=3)
    argv = ["transform", f"--checkpoint={model_dir}", "--output_dir=o", "--input_video=clip.mp4",
            "--which_styles={0:1,'Gamma':3}", "--max_size=32", "--temporal_smoothing=0.3"]
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        transform.main(FLAGS(argv))
    assert os.listdir(tmp_path / "o") == ["clip_0_250_2_750.mp4"]
    info = video.probe(tmp_path / "o" / "clip_0_250_2_750.mp4")
    assert (info.frames, info.width, info.height) == (3, 64, 48)


def test_paintings_on_a_video_equal_the_photo_api_per_frame(tmp_path, monkeypatch):
    """--style_images on a video: each frame (smoothing 0, read back before H.264) is what
    `stylize(frame, style_image=...)` gives, and the outputs are named as for photos."""
    from image_stylization import style_images
    from image_stylization.arbitrary import bundled_dir

    model = checkpoint.load_model(bundled_dir())
    painting = os.path.join(REPO, "image_stylization", "assets", "paintings", "waves.jpg")
    frames = decoded(make_clip(tmp_path / "clip.mp4", frames=2, audio=None))
    run = style_images.frame_stylizer(model, [painting])
    for frame, outputs in zip(frames, video.stylized_frames(frames, run, temporal_smoothing=0)):
        expected = stylize(frame, style_image=painting, model=model)
        assert np.abs(outputs[0].astype(int) - np.asarray(expected, int)).max() <= 1

    monkeypatch.chdir(tmp_path)
    argv = ["transform", "--input_video=clip.mp4", "--output_dir=o", f"--style_images={painting}",
            "--interpolation_weights=[0.5,1.0]", "--temporal_smoothing=0.5"]
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        transform.main(FLAGS(argv))
    assert sorted(os.listdir(tmp_path / "o")) == ["clip_stylized_waves_0.mp4",
                                                  "clip_stylized_waves_1.mp4"]
    assert video.probe(tmp_path / "o" / "clip_stylized_waves_1.mp4").frames == 2


@pytest.mark.parametrize("flags_, message", [
    (["--input_video=missing.mp4"], "missing.mp4: no such file"),
    (["--input_video=notes.txt"], "notes.txt: not a video file"),
    (["--input_video=clip.mp4", "--input_image=clip.mp4"], "give --input_image or --input_video"),
    (["--input_video=clip.mp4", "--temporal_smoothing=1"], "--temporal_smoothing must be in"),
    (["--input_video=clip.mp4", "--video_crf=60"], "--video_crf must be in 0..51"),
    (["--input_video=clip.mp4", "--all_styles"], "--all_styles makes a contact sheet"),
    (["--input_video=clip.mp4", "--output_format=jpg"], "--output_format is for images"),
    (["--input_video=clip.mp4", "--which_styles=[5]"], "--which_styles: style index 5"),
])
def test_main_bad_video_input_in_process(tmp_path, model_dir, monkeypatch, flags_, message):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "clip.mp4", frames=2, audio=None)
    (tmp_path / "notes.txt").write_text("no")
    argv = ["transform", f"--checkpoint={model_dir}", "--output_dir=o", *flags_]
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        with pytest.raises(ValueError) as e:
            transform.main(FLAGS(argv))
    assert isinstance(e.value, cli.usage_errors())
    assert str(e.value).startswith(message)
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_cli_not_a_video_exits_2_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no")
    r = _run(f"--input_video={tmp_path / 'notes.txt'}", f"--output_dir={tmp_path}/o")
    assert r.returncode == 2
    # TensorFlow's C++ start-up lines (oneDNN, absl::InitializeLog) may precede the error until
    # they are silenced at import; the error itself is one line, and nothing else is ours.
    lines = [line for line in r.stderr.strip().splitlines()
             if "oneDNN" not in line and "absl::InitializeLog" not in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"image_stylization_transform.py: error: {tmp_path / 'notes.txt'}: not a video file "
        "FFmpeg can read (")
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
