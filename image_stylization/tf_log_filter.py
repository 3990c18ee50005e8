"""Drops TensorFlow's C++ log records below a level from a byte stream (the tools' stderr).

Why `TF_CPP_MIN_LOG_LEVEL` alone does not keep the tools quiet (TensorFlow 2.21, measured):
`libtensorflow_framework.so.2` and `_pywrap_profiler_plugin.so` each link their own copy of absl
logging, and each logs "oneDNN custom operations are on" (`port.cc`) from a static initializer,
i.e. while `import tensorflow` loads them, before anything could configure logging. absl has not
been initialised then, so each copy first prints "WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR". Neither honours `TF_CPP_MIN_LOG_LEVEL`
(TensorFlow's own LOG does, e.g. `cpu_feature_guard.cc`), and no API runs early enough to stop
them. So the command line tools (`cli.run`) route file descriptor 2 through this filter while
their `main` runs.

The filter runs as a separate process (`python -S -I tf_log_filter.py LEVEL`), not a thread: a
fatal record (e.g. "compiled to use AVX instructions, but these aren't available") is followed by
abort(), which would kill a thread before it forwarded the one line that explains the crash; a
child process still reads it from the pipe and prints it.

Only whole log records are dropped: lines in absl's format (`I0000 00:00:... port.cc:153] ...`) or
TensorFlow's older one (`2024-01-11 05:40:05.061907: I tensorflow/...:182] ...`) whose severity
(I=0, W=1, E=2, F=3) is below LEVEL, and absl's InitializeLog banner when LEVEL >= 1. Everything
else, including Python output and fatal records, passes through unchanged. This file uses the
standard library only, so the child starts in milliseconds without importing the package.
"""

import os
import re
import sys

SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_RECORD = re.compile(
    rb"^(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s:\]]+:\d+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tf>[IWEF]) [^\s:\]]+:\d+\] )"
)
_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl prints seconds since the epoch in place of the seconds until its time zone is set up
# (`I0000 00:00:1795871288.296168`).
# A partial line (no newline yet) waits at most this long before it is passed on as it is, so a
# progress bar drawn with carriage returns, or a prompt, is not held back.
_PARTIAL_WAIT_S = 0.05


def keep(line, level):
    """True if `line` (bytes, with or without its line end) is to be shown at `level`."""
    if level <= 0:
        return True
    if line.startswith(_BANNER):
        return False
    m = _RECORD.match(line)
    if m is None:
        return True
    severity = SEVERITY[(m["absl"] or m["tf"]).decode()]
    return severity >= min(level, 3) or severity == 3


def filter_bytes(data, level):
    """`data` (complete lines) with the records below `level` removed."""
    return b"".join(line for line in data.splitlines(keepends=True) if keep(line, level))


def _split(buffer):
    """(complete lines ending in \\n or \\r, the remaining partial line)."""
    end = max(buffer.rfind(b"\n"), buffer.rfind(b"\r"))
    return buffer[: end + 1], buffer[end + 1:]


def run(level, source=0, sink=1):
    """Copies file descriptor `source` to `sink` until end of file, dropping records."""
    select = None
    if os.name == "posix":  # select() takes pipes on POSIX only
        import select
    pending = b""
    while True:
        if pending and select is not None:
            ready, _, _ = select.select([source], [], [], _PARTIAL_WAIT_S)
            if not ready:
                _write(sink, pending if keep(pending, level) else b"")
                pending = b""
                continue
        chunk = os.read(source, 65536)
        if not chunk:
            break
        lines, pending = _split(pending + chunk)
        if lines:
            _write(sink, filter_bytes(lines, level))
    if pending and keep(pending, level):
        _write(sink, pending)


def _write(fd, data):
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:  # the reader went away: nothing left to show
            return


if __name__ == "__main__":
    run(int(sys.argv[1]))
