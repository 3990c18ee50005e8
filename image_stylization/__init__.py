"""image_stylization: Dumoulin, Shlens & Kudlur, "A Learned Representation for Artistic Style"
(ICLR 2017) in TensorFlow 2 / Keras 3."""

import importlib
import os
import sys
import types

# Before TensorFlow is first imported: its C++ start-up lines would bury the one-line errors of
# the command line tools.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# The public names load their module, and with it TensorFlow (~4 s), on first use: importing the
# package, or a command line tool printing --help or rejecting a flag, does not pay for it.
_LAZY = {
    "ConditionalInstanceNormalization": "image_stylization.layers",
    "NearestUpsampling2D": "image_stylization.layers",
    "ReflectionPadConv2D": "image_stylization.layers",
    "build_transformer": "image_stylization.model",
    "contact_sheet": "image_stylization.stylize",
    "demo_image_path": "image_stylization.stylize",
    "load_model": "image_stylization.stylize",
    "stylize": "image_stylization.stylize",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'image_stylization' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # Importing the `stylize` submodule binds it as this package's `stylize` attribute;
        # `image_stylization.stylize` stays the function, as when this file imported it eagerly.
        if (name in _LAZY and isinstance(value, types.ModuleType)
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
