"""What every absl entry point shares: bad input ends in one line on stderr and exit status 2.

Entry points define flags, and a `main(argv)` that only turns flags into a library call; they
raise `UsageError` for bad flags; library calls raise `errors.InputError` for bad input.
"""

import os
import sys

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
