"""Where a tool's outputs go: checked before any work, so a path that cannot be used fails in
one line naming it, not in a traceback after minutes of work (and not naming a temporary file).

Every writer in the package then writes a temporary file or directory and renames it into place,
so a failure during the write (disk full) leaves the earlier outputs as they were.
"""

import errno
import os
import tempfile


def nearest_existing(path):
    """`path` itself if it exists, else its nearest existing ancestor (absolute)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def check_target(path, kind, error, name=None, beside=False):
    """Raises `error` (an `errors.InputError` class) if `path` cannot be written as a `kind`.

    kind: "file" or "dir". name: how the message calls the path (e.g. "--output_dir x"; default
    the path). beside: the writer puts a temporary beside `path` and renames it (so the parent
    directory must be writable), rather than writing into the directory `path` itself.
    A missing path is fine if its nearest existing ancestor is a directory that can be written;
    the caller creates what is missing.
    """
    path = os.fspath(path)
    name = name or path
    if os.path.lexists(path):
        if kind == "dir" and not os.path.isdir(path):
            raise error(f"{name} exists and is not a directory")
        if kind == "file" and os.path.isdir(path):
            raise error(f"{name} is a directory, not a file")
        where = os.path.dirname(os.path.abspath(path)) if (beside or kind == "file") else path
    else:
        where = nearest_existing(os.path.dirname(os.path.abspath(path)))
        if not os.path.isdir(where):
            raise error(f"{name}: cannot create it ({where} is not a directory)")
    try:
        # A real file, not os.access: root passes access() on read-only mounts' neighbours and
        # on /proc, ACLs and quotas are not in the mode bits.
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=where)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise error(f"{name}: cannot write in {where} ({e.strerror or e})") from None
    return path


def make_parents(path):
    """Creates the missing directories above `path`; returns the topmost one it created (for
    `remove_created`), or None."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    top = None
    d = parent
    while not os.path.lexists(d):
        top = d
        d = os.path.dirname(d)
    os.makedirs(parent, exist_ok=True)
    return top


def remove_created(top, path):
    """Removes the directories `make_parents(path)` created, if they are empty again."""
    if top is None:
        return
    d = os.path.dirname(os.path.abspath(os.fspath(path)))
    while True:
        try:
            os.rmdir(d)
        except OSError:
            return
        if d == top:
            return
        d = os.path.dirname(d)


# What TensorFlow's file operations raise for errno values: ENOSPC is ResourceExhausted, EFBIG
# OutOfRange, EACCES PermissionDenied, ENOENT NotFound, ENOTDIR/EISDIR FailedPrecondition.
_TF_WRITE_ERRORS = ("ResourceExhaustedError", "OutOfRangeError", "PermissionDeniedError",
                    "NotFoundError", "FailedPreconditionError")


def is_write_failure(error):
    """True for an OSError, or a TensorFlow error a failing file write raises (by class name, so
    this module needs no TensorFlow)."""
    return isinstance(error, OSError) or (
        type(error).__module__.startswith("tensorflow") and type(error).__name__ in _TF_WRITE_ERRORS)


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}


def is_storage_failure(error):
    """A write failure of the file system itself (disk full, file too large, I/O error), as
    opposed to a path that cannot be used. TensorFlow gives no errno: ResourceExhausted is ENOSPC
    (or memory: "OOM when allocating ...", which is not), OutOfRange is EFBIG."""
    if isinstance(error, OSError):
        return error.errno in _STORAGE_ERRNOS
    if not is_write_failure(error):
        return False
    name = type(error).__name__
    message = (getattr(error, "message", None) or "").lstrip()
    return name == "OutOfRangeError" or (name == "ResourceExhaustedError"
                                         and not message.startswith("OOM"))


def write_failure_reason(error):
    """"No space left on device", without the temporary path TensorFlow's messages start with."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    message = (getattr(error, "message", None) or str(error)).strip()
    return message.splitlines()[0].rsplit("; ", 1)[-1] if message else type(error).__name__
