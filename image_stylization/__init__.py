"""image_stylization: Dumoulin, Shlens & Kudlur, "A Learned Representation for Artistic Style"
(ICLR 2017) in TensorFlow 2 / Keras 3."""

import importlib

__version__ = "0.1.0"

# The public names, imported on first use (PEP 562): importing the package, and so every
# command line tool before its flags are parsed, does not load TensorFlow. `cli.run` has to set
# TensorFlow's logging up before that import.
_EXPORTS = {
    "ConditionalInstanceNormalization": "layers",
    "NearestUpsampling2D": "layers",
    "ReflectionPadConv2D": "layers",
    "build_transformer": "model",
    "contact_sheet": "stylize",
    "demo_image_path": "stylize",
    "load_model": "stylize",
    "stylize": "stylize",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{module_name}")
    # Importing the submodule bound its name (`stylize`) to the module: the API's names win.
    for export, source in _EXPORTS.items():
        if source == module_name:
            globals()[export] = getattr(module, export)
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
