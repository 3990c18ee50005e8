"""Our model format: a directory with `model.keras` and `manifest.json`.

`model.keras` is the transformer only (never VGG, so it stays ~7 MB for the paper network at
N=32, not Magenta's 548 MB). `manifest.json` carries what the weights cannot: style names,
preset, provenance, license. Loading never unpickles anything: Keras loads with safe_mode=True.
"""

import glob
import json
import os
import shutil
import tempfile
import zipfile

import keras

from image_stylization import layers as _layers  # noqa: F401  (registers the custom layers)
from image_stylization import outputs
from image_stylization.model import fuse_upsampling, num_styles_of
from image_stylization.errors import CheckpointError, StorageError  # noqa: F401  (re-exported)

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1



def bundled_checkpoint_dir(name="tf_stylize_26"):
    """Directory of a model bundled with the package (installed as `image_stylization.bundled`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(here, "bundled", name),  # wheel / non-editable install
        os.path.join(os.path.dirname(here), "checkpoints", name),  # source checkout / editable
    ):
        if os.path.isfile(os.path.join(candidate, MANIFEST_FILE)):
            return candidate
    raise CheckpointError(f"bundled model {name!r} is not installed (looked beside {here})")


def save_model(model, directory, style_names=None, overwrite=False, **manifest_fields):
    """Writes `model.keras` and `manifest.json` into `directory`, atomically.

    The files are written into a temporary sibling directory that is renamed into place (an
    earlier model there is moved aside first and deleted last), so an interrupted or failed save
    never leaves a half-written model behind, and a failed one leaves the earlier model as it was.
    """
    n = num_styles_of(model)
    style_names = list(style_names) if style_names is not None else [f"style_{i}" for i in range(n)]
    if len(style_names) != n:
        raise ValueError(f"style_names has {len(style_names)} entries, the model has {n} styles")
    manifest = {"format_version": MANIFEST_VERSION, "num_styles": n, "style_names": style_names}
    manifest.update(manifest_fields)
    return write_directory(directory, manifest,
                           lambda tmp: model.save(os.path.join(tmp, MODEL_FILE)), overwrite,
                           files=(MODEL_FILE,))


def write_directory(directory, manifest, write_files, overwrite=False, files=()):
    """Writes `manifest.json` and whatever `write_files(tmp_dir)` writes (the names `files`) into
    `directory`, atomically: a temporary sibling directory renamed into place. Returns the
    directory.

    With `overwrite`, an earlier model there is moved aside first and deleted last, so a failed
    save leaves it as it was; a directory holding anything but `files` and the manifest is
    never replaced.
    """
    directory = os.path.abspath(os.fspath(directory))
    outputs.check_target(directory, "dir", CheckpointError, beside=True)
    entries = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    if entries and not overwrite:
        raise CheckpointError(f"{directory} exists and is not empty (use overwrite=True)")
    foreign = sorted(entries - set(files) - {MANIFEST_FILE})
    if foreign:
        # Replacing means deleting: only what a model directory holds.
        raise CheckpointError(
            f"{directory} holds files a model directory does not ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); not replacing it, even with overwrite")
    parent = os.path.dirname(directory)
    tmp = old = created = None
    try:
        created = outputs.make_parents(directory)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would survive the rename
        write_files(tmp)
        with open(os.path.join(tmp, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
            f.write("\n")
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=".old-", dir=parent)
            os.replace(directory, os.path.join(old, "model"))
        os.replace(tmp, directory)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:  # put the earlier model back
                os.replace(os.path.join(old, "model"), directory)
        outputs.remove_created(created, directory)
        if isinstance(e, OSError) and not isinstance(e, StorageError):  # disk full, ...
            error = StorageError if outputs.is_storage_failure(e) else CheckpointError
            raise error(f"{directory}: cannot write the model ({e.strerror or e})") from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return directory


def read_manifest(directory):
    path = os.path.join(directory, MANIFEST_FILE)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no manifest") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest.get("style_names"), list):
        raise CheckpointError(f"{path}: manifest has no style_names list")
    return manifest


def load_model(checkpoint=None):
    """Loads a transformer.

    `checkpoint` may be None (the bundled 26-style model), one of our model directories, a
    `.keras` file, or a Magenta TF1 checkpoint (file prefix or directory; converted on the fly).
    The returned `keras.Model` carries `style_names` and `manifest` attributes. An arbitrary-style
    directory (manifest kind "arbitrary") gives an `arbitrary.ArbitraryModel` instead.
    """
    if checkpoint is None:
        checkpoint = bundled_checkpoint_dir()
    checkpoint = os.fspath(checkpoint)
    if not os.path.exists(checkpoint) and not glob.glob(glob.escape(checkpoint) + ".*"):
        raise CheckpointError(f"{checkpoint}: no such file, directory or checkpoint prefix")
    manifest = None
    if os.path.isdir(checkpoint) and not os.path.isfile(os.path.join(checkpoint, MODEL_FILE)):
        from image_stylization import arbitrary

        if arbitrary.is_arbitrary_checkpoint(checkpoint):
            return arbitrary.load_arbitrary_model(checkpoint)
    if os.path.isdir(checkpoint) and os.path.isfile(os.path.join(checkpoint, MODEL_FILE)):
        manifest = read_manifest(checkpoint)
        model_path = os.path.join(checkpoint, MODEL_FILE)
    elif checkpoint.endswith(".keras") and os.path.isfile(checkpoint):
        model_path = checkpoint
        sibling = os.path.join(os.path.dirname(checkpoint), MANIFEST_FILE)
        if os.path.isfile(sibling):
            manifest = read_manifest(os.path.dirname(checkpoint))
    else:
        from image_stylization import convert  # TF1 checkpoints; imported lazily

        if convert.is_magenta_checkpoint(checkpoint):
            return convert.load_magenta_checkpoint(checkpoint)
        raise CheckpointError(
            f"{checkpoint}: not a model directory (with {MODEL_FILE}), a .keras file, or a "
            f"Magenta checkpoint"
        )
    if not zipfile.is_zipfile(model_path):
        # Keras would say "File not found" for a .keras file cut short by a crash or a copy.
        raise CheckpointError(
            f"{model_path}: cannot load model (not a .keras zip archive: truncated or corrupt)")
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a corrupt zip/h5/config.
        raise CheckpointError(f"{model_path}: cannot load model ({type(e).__name__}: {e})") from None
    # Files saved before the upsampling moved into the conv hold the two layers separately.
    fuse_upsampling(model)
    n = num_styles_of(model)
    if manifest is None:
        manifest = {"num_styles": n, "style_names": [f"style_{i}" for i in range(n)]}
    if len(manifest["style_names"]) != n:
        raise CheckpointError(
            f"{checkpoint}: manifest names {len(manifest['style_names'])} styles, model has {n}"
        )
    model.style_names = list(manifest["style_names"])
    model.manifest = manifest
    return model


def convert_to_directory(path, output_dir, overwrite=False, command=None, **kwargs):
    """`convert.convert(path, **kwargs)` saved as one of our model directories (atomic).

    Returns (directory, model). Lives here, not in `convert`: the converter only reads and builds,
    so `convert` never imports this module back.
    """
    from image_stylization import convert

    model = convert.convert(path, **kwargs)
    fields = {k: v for k, v in model.manifest.items() if k not in ("num_styles", "style_names")}
    if command:
        fields["converter"] = dict(fields.get("converter", {}), command=command)
    directory = save_model(model, output_dir, model.style_names, overwrite=overwrite, **fields)
    return directory, model
