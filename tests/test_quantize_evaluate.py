"""Quantized .tflite variants and their accuracy, on a real conv net trained on scikit-learn digits.

Every figure comes from the LiteRT interpreter running the produced files; nothing is mocked.
"""

from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from harness.optimize.convert import ParityError, convert_to_tflite, tflite_outputs  # noqa: E402
from harness.errors import UserError  # noqa: E402
from harness.optimize.evaluate import evaluate_tflite, tflite_predict  # noqa: E402
from harness.optimize.quantize import QUANT_MODES, quantize_tflite, quantize_torch, zip_size  # noqa: E402
from models.datasets import EvalData as Data  # noqa: E402
from models.digits import digits_dataset  # noqa: E402


def wide_digits_cnn() -> nn.Module:
    # 32/64 channels: ~29k parameters, so weights dominate the file and int8 shows in its size.
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
    )  # fmt: skip


class ChannelsLast(nn.Module):
    """Takes NHWC images, as most third-party .tflite models do."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images_nhwc: torch.Tensor) -> torch.Tensor:
        return self.inner(images_nhwc.permute(0, 3, 1, 2))


class ExportDiverges(nn.Module):
    """Skips its last layer only while being exported: a conversion that changes the maths."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.inner(images)
        if torch.compiler.is_compiling():
            return logits
        return torch.log_softmax(logits, dim=1)


@pytest.fixture(scope="module")
def digits() -> Data:
    split = digits_dataset()
    return Data("digits", split.x_train, split.y_train, split.x_test, split.y_test, 10)


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    torch.manual_seed(0)
    model = wide_digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def variants(trained, digits, tmp_path_factory):
    """Every mode of the same model; non-fp32 modes reuse the parity-checked fp32 file."""
    folder = tmp_path_factory.mktemp("variants")
    fp32 = quantize_torch(trained, "fp32", digits.x_train, folder / "fp32.tflite", parity_inputs=digits.x_test[:32])
    results = {"fp32": fp32}
    for mode in ("fp16", "dynamic_int8"):
        results[mode] = quantize_torch(
            trained, mode, digits.x_train, folder / f"{mode}.tflite",
            fp32_reference=fp32.path, parity_inputs=digits.x_test,
        )  # fmt: skip
    results["int8"] = quantize_torch(
        trained, "int8", digits.x_train, folder / "int8.tflite", fp32_reference=fp32.path, parity_inputs=digits.x_test
    )
    results["int8_io"] = quantize_torch(
        trained, "int8", digits.x_train, folder / "int8_io.tflite",
        int8_io=True, fp32_reference=fp32.path, parity_inputs=digits.x_test,
    )  # fmt: skip
    for name, result in results.items():
        print(f"{name}: {result.size_bytes} bytes, zip {result.zip_bytes}, {result.method}, parity {result.parity}")
    return results


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def test_every_mode_runs_in_litert_with_its_parity_figures(variants, digits):
    assert set(QUANT_MODES) <= set(variants)
    for name, result in variants.items():
        scores = tflite_predict(result.path, digits.x_test[:4])
        assert scores.shape == (4, 10) and np.all(np.isfinite(scores)), name
        assert result.size_bytes == result.path.stat().st_size > 0
        assert 0 < result.zip_bytes == zip_size(result.path)
        assert {"max_abs_diff", "cosine_similarity", "output_scale", "relative_diff"} <= set(result.parity)
    assert variants["fp32"].parity["relative_diff"] <= 1e-4
    assert variants["fp16"].parity["relative_diff"] < variants["int8"].parity["relative_diff"]
    for name in ("fp16", "dynamic_int8", "int8", "int8_io"):
        assert variants[name].parity["cosine_similarity"] > 0.98, name
        assert variants[name].parity["top1_agreement"] >= 0.97, name
        assert "ai-edge-quantizer" in variants[name].method


def test_int8_weights_make_the_file_about_four_times_smaller(variants):
    fp32_bytes = variants["fp32"].size_bytes
    # Flatbuffer structure, scales and int32 biases stay: ~3.3x here, 4x only in the limit.
    assert fp32_bytes / variants["int8"].size_bytes > 3.0
    assert fp32_bytes / variants["dynamic_int8"].size_bytes > 3.0
    assert 1.5 < fp32_bytes / variants["fp16"].size_bytes < 2.1


def test_full_integer_int8_io_has_int8_tensors_and_predict_uses_their_scale(variants, digits):
    interpreter = _interpreter(variants["int8_io"].path)
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int8
    scale, zero_point = input_detail["quantization"]
    assert scale > 0

    sample = digits.x_test[7:8]
    by_hand = np.clip(np.round(sample / scale) + zero_point, -128, 127).astype(np.int8)
    interpreter.set_tensor(input_detail["index"], by_hand)
    interpreter.invoke()
    raw = interpreter.get_tensor(output_detail["index"]).astype(np.float32)
    out_scale, out_zero_point = output_detail["quantization"]
    expected = (raw - out_zero_point) * out_scale
    np.testing.assert_array_equal(tflite_predict(variants["int8_io"].path, sample)[0], expected.reshape(-1))

    float_io = _interpreter(variants["int8"].path).get_input_details()[0]
    assert float_io["dtype"] == np.float32


def test_int8_top1_within_two_points_of_fp32(variants, digits):
    fp32 = evaluate_tflite(variants["fp32"].path, digits)
    assert fp32.top1 > 0.95 and fp32.top5 is not None and fp32.top5 >= fp32.top1
    for name in ("fp16", "dynamic_int8", "int8", "int8_io"):
        report = evaluate_tflite(variants[name].path, digits, baseline_predictions=fp32.predictions)
        print(f"{name}: top1 {report.top1:.4f} vs fp32 {fp32.top1:.4f}, agreement {report.agreement:.4f}")
        assert report.n == len(digits.y_test)
        assert abs(report.top1 - fp32.top1) <= 0.02, name
        assert report.agreement >= 0.97, name


def test_agreement_without_labels(variants, digits):
    unlabelled = Data("sample_images", None, None, digits.x_test, None, None)
    fp32 = evaluate_tflite(variants["fp32"].path, unlabelled)
    assert fp32.top1 is None and fp32.top5 is None and fp32.agreement is None
    itself = evaluate_tflite(variants["fp32"].path, unlabelled, baseline_predictions=fp32.predictions)
    assert itself.agreement == 1.0
    shuffled = evaluate_tflite(variants["fp32"].path, unlabelled, baseline_predictions=np.roll(fp32.predictions, 1))
    assert shuffled.agreement < 0.5


def test_nhwc_tflite_is_evaluated_and_quantized(trained, digits, variants, tmp_path):
    nhwc_path = tmp_path / "nhwc.tflite"
    nhwc_samples = np.ascontiguousarray(digits.x_test[:8].transpose(0, 2, 3, 1))
    convert_to_tflite(ChannelsLast(trained), nhwc_samples, nhwc_path, "nhwc_digits")
    assert tuple(_interpreter(nhwc_path).get_input_details()[0]["shape"]) == (1, 8, 8, 1)

    nchw = evaluate_tflite(variants["fp32"].path, digits)
    nhwc = evaluate_tflite(nhwc_path, digits)
    np.testing.assert_array_equal(nhwc.predictions, nchw.predictions)
    np.testing.assert_allclose(
        tflite_predict(nhwc_path, digits.x_test[:16]), tflite_outputs(variants["fp32"].path, digits.x_test[:16]),
        rtol=0, atol=1e-4,
    )  # fmt: skip

    # An existing .tflite (here NHWC, as a third-party one would be) quantized by ai-edge-quantizer.
    int8 = quantize_tflite(nhwc_path, "int8", digits.x_train, tmp_path / "nhwc-int8.tflite", parity_inputs=digits.x_test)
    assert nhwc_path.stat().st_size / int8.size_bytes > 3.0
    assert int8.parity["top1_agreement"] >= 0.97
    assert abs(evaluate_tflite(int8.path, digits).top1 - nchw.top1) <= 0.02


def test_quantize_torch_converts_its_own_fp32_reference(trained, digits, tmp_path):
    result = quantize_torch(trained, "dynamic_int8", digits.x_train[:16], tmp_path / "dyn.tflite")
    assert result.path.is_file() and list(tmp_path.iterdir()) == [result.path]
    assert result.parity["reference"] == "fp32 tflite" and result.parity["sample_count"] == 16


def test_fp32_conversion_that_changes_the_maths_raises(trained, digits, tmp_path):
    out_path = tmp_path / "diverges.tflite"
    with pytest.raises(ParityError, match=r"diverging_model: .*max_abs_diff="):
        quantize_torch(ExportDiverges(trained), "fp32", digits.x_train, out_path, model_name="diverging_model")
    assert not out_path.exists()


def test_bad_modes_are_user_errors(variants, digits, tmp_path):
    with pytest.raises(UserError, match="unknown quantization mode 'int4'"):
        quantize_tflite(variants["fp32"].path, "int4", digits.x_train, tmp_path / "x.tflite")
    with pytest.raises(UserError, match="int8 I/O needs"):
        quantize_tflite(variants["fp32"].path, "fp16", digits.x_train, tmp_path / "x.tflite", int8_io=True)
    with pytest.raises(UserError, match="no such .tflite"):
        quantize_tflite(tmp_path / "missing.tflite", "int8", digits.x_train, tmp_path / "x.tflite")
    with pytest.raises(UserError, match="fits neither NCHW nor NHWC"):
        tflite_predict(variants["fp32"].path, np.zeros((2, 3, 16, 16), dtype=np.float32))
