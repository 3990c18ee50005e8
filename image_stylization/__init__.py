"""image_stylization: Dumoulin, Shlens & Kudlur, "A Learned Representation for Artistic Style"
(ICLR 2017) in TensorFlow 2 / Keras 3."""

import os

# Before TensorFlow is first imported: its C++ start-up lines would bury the one-line errors of
# the command line tools.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from image_stylization.layers import (  # noqa: F401
    ConditionalInstanceNormalization,
    NearestUpsampling2D,
    ReflectionPadConv2D,
)
from image_stylization.model import build_transformer  # noqa: F401
from image_stylization.stylize import contact_sheet, demo_image_path, load_model, stylize  # noqa: F401,E402
from image_stylization.arbitrary import predict_style  # noqa: F401,E402
