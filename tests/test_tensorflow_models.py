"""Issue 15: TensorFlow SavedModels through TFLiteConverter, the optional `tensorflow` extra.

Where TensorFlow is installed (pip install '.[tensorflow]'), a real SavedModel is converted
and its int8 variant made by the converter's representative dataset; where it is not, giving
one says how to install it. Nothing is mocked."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from models.errors import ModelInputError
from models.registry import resolve_model

HAVE_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


@pytest.mark.skipif(HAVE_TENSORFLOW, reason="TensorFlow is installed here")
def test_a_saved_model_without_tensorflow_says_how_to_install_it(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(ModelInputError, match=r"needs TensorFlow: pip install 'bench\[tensorflow\]'"):
        resolve_model(str(tmp_path / "model"))


@pytest.mark.skipif(not HAVE_TENSORFLOW, reason="the tensorflow extra is not installed")
def test_a_saved_model_is_converted_by_tflite_converter_and_int8_by_its_representative_dataset(tmp_path):
    import tensorflow as tf

    from harness.optimize.pipeline import Pipeline
    from harness.optimize.variants import parse_variant
    from models.datasets import load_dataset

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal((3, 3, 3, 8), seed=(0, 1)))
            self.dense = tf.Variable(tf.random.stateless_normal((8, 10), seed=(2, 3)))

        @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
        def __call__(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "SAME"))
            return tf.reduce_mean(y, axis=[1, 2]) @ self.dense

    tf.saved_model.save(Net(), str(tmp_path / "net"))
    source = resolve_model(str(tmp_path / "net"))
    assert (source.kind, source.input_shape, source.input_layout, source.num_classes) == (
        "savedmodel", (1, 32, 32, 3), "NHWC", 10)
    data = load_dataset(source, max_test=32, max_train=64)
    baseline, int8 = Pipeline(source, data, tmp_path / "cache").build_all(
        [parse_variant("baseline"), parse_variant("quant=int8")])
    assert baseline.metadata["quantization"]["method"] == "TensorFlow TFLiteConverter (fp32)"
    assert int8.metadata["quantization"]["method"].startswith("TensorFlow TFLiteConverter representative dataset int8")
    assert int8.size_bytes < baseline.size_bytes
    assert int8.metadata["parity"]["cosine_similarity"] > 0.99
    assert np.isfinite(int8.metadata["accuracy"]["agreement"])
