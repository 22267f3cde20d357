"""Issue 15: TensorFlow SavedModels through TFLiteConverter, the optional `tensorflow` extra, and
Keras 2 `.h5` files, which Keras 3 reads without TensorFlow.

Where TensorFlow is installed (pip install '.[tensorflow]'), a real SavedModel is converted
and its int8 variant made by the converter's representative dataset; where it is not, giving
one says how to install it. Nothing is mocked."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.errors import ModelInputError
from models.registry import resolve_model

HAVE_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None

_SAVED_MODEL_WRITER = """
import sys
import tensorflow as tf

class Net(tf.Module):
    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal((3, 3, 3, 8), seed=(0, 1)))
        self.dense = tf.Variable(tf.random.stateless_normal((8, 10), seed=(2, 3)))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
    def __call__(self, x):
        y = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "SAME"))
        return tf.reduce_mean(y, axis=[1, 2]) @ self.dense

tf.saved_model.save(Net(), sys.argv[1])
"""


@pytest.mark.skipif(HAVE_TENSORFLOW, reason="TensorFlow is installed here")
def test_a_saved_model_without_tensorflow_says_how_to_install_it(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(ModelInputError, match=r"needs TensorFlow: pip install 'bench\[tensorflow\]'"):
        resolve_model(str(tmp_path / "model"))


@pytest.mark.skipif(not HAVE_TENSORFLOW, reason="the tensorflow extra is not installed")
def test_a_saved_model_is_converted_by_tflite_converter_and_int8_by_its_representative_dataset(tmp_path):
    from harness.optimize.pipeline import Pipeline
    from harness.optimize.variants import parse_variant
    from models.datasets import load_dataset

    # Written in a process of its own, as a user's training job would: TensorFlow loaded in this
    # one would make a later import of torch's triton crash it.
    subprocess.run([sys.executable, "-c", _SAVED_MODEL_WRITER, str(tmp_path / "net")], check=True, timeout=300,
                   capture_output=True)
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
    # TensorFlow ran in processes of its own: loaded here, it would make torch's triton import
    # (litert-torch's conversion) crash this process.
    assert "tensorflow" not in sys.modules


def test_a_keras2_h5_file_is_read_by_keras3_without_tensorflow_and_computes_what_keras2_did():
    """A real Keras 2 file (tests/data/keras2/README.md says how it was written): Keras 3 on the
    torch backend reads it and exports the .tflite; TensorFlow is not needed, nor loaded."""
    from harness.optimize.evaluate import tflite_predict

    data = Path(__file__).parent / "data" / "keras2"
    source = resolve_model(str(data / "cnn.h5"))
    assert (source.kind, source.input_shape, source.input_layout, source.num_classes) == (
        "keras", (1, 16, 16, 3), "NHWC", 10)
    inputs_nhwc, expected = np.load(data / "inputs.npy"), np.load(data / "keras2_outputs.npy")
    outputs = tflite_predict(source.tflite_path, inputs_nhwc.transpose(0, 3, 1, 2))  # it takes NCHW samples
    assert np.abs(outputs - expected).max() <= 1e-4 * np.abs(expected).max()
    assert "tensorflow" not in sys.modules
