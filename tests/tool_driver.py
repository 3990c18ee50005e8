"""Runs one command line tool many times in one process, as `cli.run` runs it from its console
script, for tests/test_tool_faults.py: TensorFlow is imported once per tool instead of once per
case. (The tools cannot share the pytest process: their absl flags clash.)

    python tests/tool_driver.py image_stylization.image_stylization_transform CASES.json RESULTS.json

CASES.json: {case: [step, ...]}; a step is {"argv": [flags], "fsize": bytes or null,
"truncate": [paths], "fill": path or null, "snapshot": path or null}. Before the run, "truncate"
cuts every file under each path to half its size (what a writer killed mid-way leaves), and
"fill" writes zeros into a file at that path until the disk is full. During the run, "fsize"
limits the size of any file written (RLIMIT_FSIZE: writes past it fail with EFBIG, a stand-in
for a full disk that needs no privileges). After it, "snapshot" records {relative path: sha256}
of the files under that path.

RESULTS.json, rewritten after every step (a hung case still leaves the others' results):
{case: [{"status": exit status or "traceback", "stdout": str, "stderr": str,
"snapshot": {...}}, ...]}. stdout and stderr are captured at the file descriptor level, so they
hold TensorFlow's C++ lines too (the first case of a run sees TensorFlow's import).
"""

import hashlib
import importlib
import json
import os
import sys
import tempfile
import traceback


def truncate_under(path):
    files = [path] if os.path.isfile(path) else [
        os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
    for f in files:
        os.truncate(f, os.path.getsize(f) // 2)


def fill(path):
    block = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(block[:size])
            except OSError:
                continue


def snapshot(root):
    out = {}
    for d, _, names in os.walk(root):
        for name in names:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def run_step(tool, prog, step):
    import resource

    from absl import flags
    from image_stylization import cli

    for path in step.get("truncate") or []:
        truncate_under(path)
    if step.get("fill"):
        fill(step["fill"])
    flags.FLAGS.unparse_flags()
    sys.argv = [prog] + step["argv"]
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        trace = ""
        try:
            if step.get("fsize"):
                resource.setrlimit(resource.RLIMIT_FSIZE, (step["fsize"], limit[1]))
            cli.run(tool.main, list(sys.argv))
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001  (what a user would see as a traceback)
            status, trace = "traceback", traceback.format_exc()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except OSError:  # past the size limit
                    pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
    result = {"status": status, "stdout": texts[0], "stderr": texts[1] + trace}
    if step.get("snapshot"):
        result["snapshot"] = snapshot(step["snapshot"])
    return result


def main():
    import signal

    module, cases_file, results_file = sys.argv[1:4]
    # Past RLIMIT_FSIZE a write fails with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    tool = importlib.import_module(module)
    prog = module.rsplit(".", 1)[-1]
    with open(cases_file) as f:
        cases = json.load(f)
    results = {}
    for name, steps in cases.items():
        results[name] = []
        for step in steps:
            results[name].append(run_step(tool, prog, step))
            with open(results_file + ".tmp", "w") as f:
                json.dump(results, f)
            os.replace(results_file + ".tmp", results_file)


if __name__ == "__main__":
    main()
