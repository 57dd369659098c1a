"""A small demo model that needs no download: an iris classifier exported to ONNX.

scikit-learn bundles the iris dataset, so the model is trained here and exported with skl2onnx.
The bytes are cached on disk (``CREDITGATE_DATA_DIR`` or the system's temporary directory), and
the training is deterministic, so every build gives the same model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Final

DEMO_MODEL_NAME: Final = "iris-classifier"
CACHE_FILE: Final = "creditgate-demo-iris.onnx"
# One prediction row of the demo model: sepal length, sepal width, petal length, petal width (cm).
DEMO_INPUT: Final = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def cache_path() -> Path:
    folder = Path(os.environ.get("CREDITGATE_DATA_DIR") or tempfile.gettempdir())
    return folder / CACHE_FILE


def demo_model_bytes() -> bytes:
    """The demo ONNX model, built once and then read from the cache."""
    path = cache_path()
    if path.exists():
        return path.read_bytes()
    data = build_demo_model()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(path)
    return data


def build_demo_model() -> bytes:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    onnx_model = to_onnx(model, features[:1].astype("float32"),
                         options={id(model): {"zipmap": False}}, target_opset=17)
    return bytes(onnx_model.SerializeToString())
