"""What every absl entry point shares: bad input ends in one line on stderr and exit status 2,
and TensorFlow's C++ log lines stay out of the output unless asked for.

Entry points define flags, and a `main(argv)` that only turns flags into a library call; they
raise `UsageError` for bad flags; library calls raise `errors.InputError` for bad input.

TensorFlow's C++ logging: `run` sets `TF_CPP_MIN_LOG_LEVEL` before `main` imports TensorFlow
(3, fatal only, unless the user set it or gave `--verbosity`), and routes stderr through
`tf_log_filter`, which drops the records that ignore that variable (see its docstring).
"""

import contextlib
import errno
import os
import re
import subprocess
import sys
import time

from absl import app, flags

from image_stylization import errors, tf_log_filter

EXIT_USAGE = 2
EXIT_FAILURE = 1
# TensorFlow's C++ records: fatal only. Its ERROR lines are noise to a user too: libjpeg's
# "Premature end of JPEG data" for each photo the data pipeline skips (and counts itself),
# "Unable to register cuDNN factory" on GPU builds. Python exceptions carry real failures.
DEFAULT_TF_LOG_LEVEL = 3


class UsageError(errors.InputError):
    """Bad flags: reported as one line with exit status 2, like every `errors.InputError`."""


# OSErrors that mean "this path cannot be used as given" (exit 2), as opposed to a file system
# failing under a valid command (disk full, I/O error: exit 1).
_PATH_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
                errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP}


def usage_errors():
    # FileNotFoundError: a path flag naming nothing, raised by open() deep inside a library call.
    return (errors.InputError, FileNotFoundError)


def environment_errors():
    """What `run` turns into one line even though no library code caught it: OSError, and the
    errors TensorFlow's file operations raise for errno values (ENOSPC is ResourceExhausted,
    EFBIG OutOfRange)."""
    kinds = [OSError]
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        kinds += [tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
                  tf.errors.AlreadyExistsError, tf.errors.ResourceExhaustedError,
                  tf.errors.OutOfRangeError, tf.errors.DataLossError]
    return tuple(kinds)


def exit_status(error):
    """2 for a path that cannot be used as given, 1 for a file system that failed."""
    if isinstance(error, OSError):
        return EXIT_USAGE if error.errno in _PATH_ERRNOS else EXIT_FAILURE
    name = type(error).__name__
    return EXIT_FAILURE if name in ("ResourceExhaustedError", "OutOfRangeError") else EXIT_USAGE


def first_line(error):
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    message = getattr(error, "message", None) or str(error)  # tf.errors.OpError: no node info
    message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", message.strip())
    return message.splitlines()[0] if message else type(error).__name__


def fail(message, status=EXIT_USAGE):
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "image_stylization"
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        # Objects freed at exit (e.g. a checkpoint restore that failed) log warnings that would
        # bury the one line that matters.
        tf.get_logger().setLevel("ERROR")
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(status)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0])


def tf_log_level():
    """TensorFlow's C++ minimum log level for this run (0 shows everything, 3 fatal only).

    `--verbosity`, when given, decides (DEBUG/INFO: 0, WARNING: 1, ERROR: 2, FATAL: 3); else a
    `TF_CPP_MIN_LOG_LEVEL` the user set (TensorFlow reads anything but a number as 0); else 3.
    """
    verbosity = flags.FLAGS["verbosity"]
    if verbosity.present:
        return 0 if verbosity.value >= 0 else min(3, -verbosity.value)
    value = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if value is None:
        return DEFAULT_TF_LOG_LEVEL
    value = value.strip()
    return min(int(value), 3) if value.isdigit() else 0


@contextlib.contextmanager
def filtered_stderr(level):
    """Routes file descriptor 2 through `tf_log_filter` at `level` (nothing to do at 0).

    File descriptor, not `sys.stderr`: the records come from C++. If the filter cannot start,
    stderr is left as it is.
    """
    if level <= 0 or not sys.executable:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        # A new session: Ctrl-C at a terminal reaches the tool (which may checkpoint and say
        # so on stderr), not the filter; the filter ends when the tool closes the pipe.
        child = subprocess.Popen(
            [sys.executable, "-S", "-I", tf_log_filter.__file__, str(level)],
            stdin=subprocess.PIPE, stdout=saved, stderr=saved, start_new_session=True)
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(child.stdin.fileno(), 2)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        child.stdin.close()
        child.wait()


def run(main, argv=None):
    """`absl.app.run` with bad input turned into one line and exit status 2 (a failing file
    system: status 1), and TensorFlow's C++ logging at `tf_log_level()`."""

    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])}")
        level = tf_log_level()
        if flags.FLAGS["verbosity"].present or "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
            # Read by TensorFlow once, when `main` first imports it.
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(level)
        with filtered_stderr(level):
            try:
                return main(argv)
            except usage_errors() as e:
                fail(first_line(e))
            except environment_errors() as e:
                fail(first_line(e), exit_status(e))

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
