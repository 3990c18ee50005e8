"""Op time from a TensorFlow profile: the bench scripts' one reader of the profiler's XPlane."""

import collections
import glob
import os


def op_times(logdir, calls):
    """({op type: seconds per call}, {op name: seconds per call}) of the newest profile in
    `logdir`, for `calls` profiled calls. Ops that run at the same time overlap."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_op = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and not name.startswith(("_", "Eager")) and "::" not in name:
                    by_type[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12 / calls
                    by_op[name] += event.duration_ps / 1e12 / calls
    return by_type, by_op
