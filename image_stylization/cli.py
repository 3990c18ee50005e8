"""What every absl entry point shares: bad input ends in one line on stderr and exit status 2.

Entry points define flags, and a `main(argv)` that only turns flags into a library call; they
raise `UsageError` for bad flags; library calls raise `errors.InputError` for bad input.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from image_stylization import errors  # noqa: E402

EXIT_USAGE = 2


class UsageError(errors.InputError):
    """Bad flags: reported as one line with exit status 2, like every `errors.InputError`."""


def usage_errors():
    # FileNotFoundError: a path flag naming nothing, raised by open() deep inside a library call.
    return (errors.InputError, FileNotFoundError)


def fail(message):
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "image_stylization"
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        # Objects freed at exit (e.g. a checkpoint restore that failed) log warnings that would
        # bury the one line that matters.
        tf.get_logger().setLevel("ERROR")
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0])


def run(main, argv=None):
    """`absl.app.run` with usage errors turned into one line and exit status 2."""

    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            return main(argv)
        except usage_errors() as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)

    app.run(wrapped, argv=argv, flags_parser=_parse_flags)


def require(flag_value, name):
    if flag_value in (None, ""):
        raise UsageError(f"--{name} is required")
    return flag_value


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressLine:
    """`progress(fraction)` callback that reports "label: 42% ETA 1m05s" on `stream`.

    Silent for the first `delay` seconds, so quick jobs print nothing. On a terminal the line is
    rewritten in place (at most every `interval` s); in a log, a new line at most every
    `log_interval` s. `close()` ends the line.
    """

    def __init__(self, label, stream=None, delay=3.0, interval=0.5, log_interval=15.0,
                 clock=time.monotonic):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.delay, self.clock = delay, clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.start = clock()
        self.last = None
        self.width = 0

    def __call__(self, fraction):
        now = self.clock()
        elapsed = now - self.start
        if elapsed < self.delay or not fraction > 0:
            return
        if self.last is not None and now - self.last < self.interval and fraction < 1:
            return
        self.last = now
        fraction = min(fraction, 1.0)
        text = f"{self.label}: {int(100 * fraction):3d}%"
        text += (f" ETA {_duration(elapsed * (1 - fraction) / fraction)}" if fraction < 1
                 else f" done in {_duration(elapsed)}")
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
        self.width = 0
