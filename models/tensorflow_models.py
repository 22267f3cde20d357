"""TensorFlow SavedModel directories, converted by TensorFlow's own TFLiteConverter (the optional
`tensorflow` extra: pip install 'bench[tensorflow]').

fp32 is the converter's plain conversion; int8 is its representative-dataset path (optimizations
DEFAULT, the dataset's calibration samples, TFLITE_BUILTINS_INT8 kernels), with float or int8
I/O. Keras 2 `.h5` files need no TensorFlow: Keras 3 reads them.

bench never imports TensorFlow in its own process (models.isolated says why): each
conversion runs in a spawned process of its own.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ModelInputError
from models.isolated import call_in_own_process

SAVED_MODEL_FILE = "saved_model.pb"
TENSORFLOW_REMEDY = "pip install 'bench[tensorflow]' (tensorflow-cpu==2.21.0)"


def is_saved_model(path: Path) -> bool:
    return path.is_dir() and (path / SAVED_MODEL_FILE).is_file()


def tensorflow() -> Any:
    """TensorFlow, or ModelInputError saying how to get it."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ModelInputError(f"a TensorFlow SavedModel needs TensorFlow: {TENSORFLOW_REMEDY}") from None
    except Exception as error:  # a broken install or a clash with another package of this environment
        raise ModelInputError(
            f"TensorFlow does not load in this environment ({type(error).__name__}: {str(error)[:160]}); "
            f"reinstall it with {TENSORFLOW_REMEDY}, or convert the SavedModel with TFLiteConverter in an "
            "environment of its own and give bench the .tflite") from None
    return tf


def saved_model_sha256(path: Path) -> str:
    """One digest over every file of the SavedModel directory (names and bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def convert_saved_model(path: Path, out_path: Path, *, calibration: np.ndarray | None = None,
                        int8_io: bool = False) -> tuple[str, str]:
    """The SavedModel as a .tflite at `out_path`; with `calibration` (samples in the model's own
    layout) full-integer int8 by the representative dataset, in a process of its own. Returns how
    it was made and TensorFlow's version."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ModelInputError(f"a TensorFlow SavedModel needs TensorFlow: {TENSORFLOW_REMEDY}")
    return call_in_own_process(_convert_in_this_process, Path(path), Path(out_path), calibration, int8_io,
                               what=f"TensorFlow converting {str(path)!r}")


def _convert_in_this_process(path: Path, out_path: Path, calibration: np.ndarray | None,
                             int8_io: bool) -> tuple[str, str]:
    tf = tensorflow()
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
        method = "TensorFlow TFLiteConverter (fp32)"
        if calibration is not None:
            samples = np.asarray(calibration, dtype=np.float32)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([sample[None, ...]] for sample in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = converter.inference_output_type = tf.int8
            method = (f"TensorFlow TFLiteConverter representative dataset int8 ({len(samples)} samples, "
                      f"{'int8' if int8_io else 'float'} I/O)")
        model = converter.convert()
    except ModelInputError:
        raise
    except Exception as error:
        raise ModelInputError(f"TFLiteConverter cannot convert {str(path)!r} "
                              f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''})") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model)
    return method, tf.__version__
