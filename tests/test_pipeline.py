"""The optimization pipeline end to end on real models and data: prune, fine-tune, quantize,
convert, verify, cache. Nothing is mocked."""
import json
import os
import zipfile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.optimize.artifacts import METADATA_FILENAME, recipe_key, sha256_file
from harness.errors import UserError
from harness.optimize.evaluate import tflite_predict
from harness.optimize.pipeline import Pipeline, variant_recipe
from harness.optimize.variants import VariantSpec, parse_variant
from models.datasets import load_dataset
from models.registry import ModelSource, resolve_model

pytestmark = pytest.mark.slow

PRUNED = "prune=0.5,steps=2,ft=10"   # iterative: prune 2 steps, 5 epochs of fine-tuning after each
PRUNED_INT8 = PRUNED + ",quant=int8"


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline-cache")


@pytest.fixture(scope="module")
def digits(digits_cache):
    source = resolve_model("digits_cnn")
    data = load_dataset(source)
    pipeline = Pipeline(source, data, digits_cache, log=print)
    baseline, pruned_only, pruned, pruned_int8 = pipeline.build_all(
        [parse_variant(v) for v in ("baseline", "prune=0.5", PRUNED, PRUNED_INT8)])
    return source, data, baseline, pruned_only, pruned, pruned_int8


def test_digits_pruned_int8_is_4x_smaller_and_within_a_point(digits):
    _s, _d, baseline, _po, pruned, pruned_int8 = digits
    base_top1 = baseline.metadata["accuracy"]["top1"]
    int8_top1 = pruned_int8.metadata["accuracy"]["top1"]
    print(f"baseline {baseline.size_bytes} B top-1 {base_top1:.4f}; "
          f"pruned int8 {pruned_int8.size_bytes} B top-1 {int8_top1:.4f}")
    assert base_top1 > 0.97
    assert baseline.size_bytes >= 4 * pruned_int8.size_bytes
    assert int8_top1 >= base_top1 - 0.010
    # The pruned model is physically smaller: parameters, MACs and file.
    assert pruned.metadata["params"] < 0.5 * baseline.metadata["params"]
    assert pruned.metadata["macs"] < 0.5 * baseline.metadata["macs"]
    assert pruned.size_bytes < 0.5 * baseline.size_bytes


def test_fine_tuning_recovers_what_pruning_lost(digits):
    _s, _d, baseline, pruned_only, pruned, _i8 = digits
    steps = pruned.metadata["prune"]["steps"]
    right_after_pruning = steps[-1]["accuracy_after_prune"]
    after_fine_tune = pruned.metadata["accuracy"]["top1"]
    print(f"right after pruning {right_after_pruning:.4f}, after fine-tuning {after_fine_tune:.4f}")
    assert after_fine_tune > right_after_pruning + 0.03
    # Pruning alone (no fine-tuning) loses accuracy, measured on the converted .tflite too.
    assert pruned_only.metadata["accuracy"]["top1"] < baseline.metadata["accuracy"]["top1"] - 0.03


def test_lottery_tickets_keep_their_sparsity_and_stand_beside_their_twin(digits, digits_cache):
    """Issue 15: a rewound ticket is the mask on the rewound weights, retrained with the mask
    held; it was dense (109,492 B zipped against 34,478 B) when the rewind lost the mask."""
    source, data = digits[0], digits[1]
    pipeline = Pipeline(source, data, digits_cache, log=print)
    plain, ticket, twin = pipeline.build_all([parse_variant("sparsity=0.8"),
                                              parse_variant("sparsity=0.8,lt=1,ft=1")])
    assert [plain.variant, ticket.variant, twin.variant] == ["sparse80", "sparse80-lt-ft1", "sparse80-ft1"]
    zipped = {a.variant: a.metadata["zip_bytes"] for a in (plain, ticket, twin)}
    print(zipped)
    assert abs(zipped["sparse80-lt-ft1"] - zipped["sparse80"]) <= 0.05 * zipped["sparse80"]
    assert ticket.metadata["sparsity"]["sparsity"] >= 0.799
    lottery = ticket.metadata["lottery_ticket"]
    assert lottery == {"rewind_point": "after epoch 1 of 20 of its training (seed 0)",
                       "retrain_epochs": 1.0, "mask_held": True, "compared_with": "sparse80-ft1"}
    # Retrained, not left at the epoch-1 rewind: far above chance on 10 classes.
    assert ticket.metadata["accuracy"]["top1"] > 0.8


def test_metadata_beside_each_artifact(digits):
    _s, _d, baseline, _po, _p, pruned_int8 = digits
    for artifact in (baseline, pruned_int8):
        document = json.loads((artifact.path.parent / METADATA_FILENAME).read_text())
        assert document["sha256"] == sha256_file(artifact.path) == artifact.sha256
        meta = document["metadata"]
        assert meta["size_bytes"] == artifact.size_bytes and 0 < meta["zip_bytes"] <= artifact.size_bytes
        assert meta["params"] > 0 and meta["macs"] > 0
        assert "max_abs_diff" in meta["parity"] and "cosine_similarity" in meta["parity"]
        assert set(meta["knobs"]) >= {"prune", "ft", "quant", "importance", "round_to"}
    assert baseline.metadata["parent"] is None
    assert pruned_int8.metadata["parent"] == baseline.sha256
    assert pruned_int8.metadata["quantization"]["mode"] == "int8"
    assert pruned_int8.metadata["accuracy"]["agreement"] > 0.95
    assert baseline.metadata["parity"]["relative_diff"] <= 1e-4
    assert pruned_int8.name == "digits_cnn-pruned50-x2-ft10-int8"


def test_second_pipeline_is_served_from_cache_without_loading_the_model(digits, digits_cache, monkeypatch):
    source, data, baseline, _po, _p, pruned_int8 = digits

    def must_not_load(*_a, **_k):
        raise AssertionError("the model was loaded although every artifact is cached")

    monkeypatch.setattr(ModelSource, "load_torch", must_not_load)
    again = Pipeline(source, data, digits_cache).build_all([VariantSpec(), parse_variant(PRUNED_INT8)])
    assert [a.cached for a in again] == [True, True]
    assert [a.sha256 for a in again] == [baseline.sha256, pruned_int8.sha256]


def test_damaged_cache_entry_is_rebuilt_to_the_same_bytes(digits, tmp_path):
    source, data, baseline, *_ = digits
    cache = tmp_path / "cache"
    shutil.copytree(baseline.path.parent, cache / baseline.path.parent.name)
    (cache / baseline.path.parent.name / baseline.path.name).write_bytes(b"truncated")
    rebuilt = Pipeline(source, data, cache).build(VariantSpec())
    assert rebuilt.cached is False
    assert rebuilt.sha256 == baseline.sha256  # training and conversion are deterministic


def test_recipe_key_follows_every_knob(digits):
    source, data, *_ = digits
    base = recipe_key(variant_recipe(source, data, VariantSpec()))
    assert base == recipe_key(variant_recipe(source, data, VariantSpec()))
    for other in (variant_recipe(source, data, VariantSpec(), seed=1),
                  variant_recipe(source, data, parse_variant("prune=0.5")),
                  variant_recipe(source, data, parse_variant("prune=0.5,round_to=4")),
                  variant_recipe(source, data, parse_variant("int8"))):
        assert recipe_key(other) != base


def test_an_existing_tflite_is_benchmarked_as_is_and_quantized(digits, tmp_path):
    _s, _d, baseline, *_ = digits
    copy = tmp_path / "third_party.tflite"
    shutil.copyfile(baseline.path, copy)
    source = resolve_model(str(copy))
    assert source.kind == "tflite"
    data = load_dataset(source)  # no labels for a foreign model: agreement with its own outputs
    pipeline = Pipeline(source, data, tmp_path / "cache")
    as_is, int8 = pipeline.build_all([VariantSpec(), parse_variant("int8")])
    assert as_is.sha256 == sha256_file(copy)
    assert int8.size_bytes * 3 < as_is.size_bytes
    assert int8.metadata["accuracy"]["agreement"] > 0.9
    with pytest.raises(UserError, match="only quant= variants"):
        pipeline.build(parse_variant("prune=0.3"))


ARCHITECTURES = ("efficientnet_b0", "resnet50", "mobilenet_v3_large", "mobilenet_v2",
                 "mobilenet_v3_small", "resnet18")  # the longest first: the pool ends sooner


def _build_architecture(name: str, cache_dir: str) -> dict:
    """Baseline and pruned35 of one architecture, built in a worker process."""
    import torch

    torch.set_num_threads(1)  # two workers on two cores
    source = resolve_model(name, input_shape=(1, 3, 64, 64))  # small input keeps CI fast
    data = load_dataset(source, max_test=4, max_train=8)
    baseline, pruned = Pipeline(source, data, Path(cache_dir)).build_all(
        [VariantSpec(), parse_variant("prune=0.35")])
    return {"x_test": data.x_test,
            "artifacts": [{"path": str(a.path), "metadata": a.metadata, "size_bytes": a.size_bytes}
                          for a in (baseline, pruned)]}


@pytest.fixture(scope="module")
def architectures(tmp_path_factory) -> dict:
    """Every builtin architecture built once, two at a time: each conversion is mostly
    single-threaded tracing (torch.export), so two worker processes halve the wall time."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_build_architecture, name,
                                     str(tmp_path_factory.mktemp(f"arch-{name}")))
                   for name in ARCHITECTURES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_builtin_architecture_prunes_converts_and_passes_parity(name, architectures):
    built = architectures[name]
    baseline, pruned = built["artifacts"]
    for artifact in (baseline, pruned):
        parity = artifact["metadata"]["parity"]
        assert parity["relative_diff"] <= 1e-4, parity  # fp32 conversion checked on real images
        logits = tflite_predict(Path(artifact["path"]), built["x_test"])
        assert logits.shape == (4, 1000)
    assert pruned["metadata"]["params"] < 0.8 * baseline["metadata"]["params"]
    assert pruned["size_bytes"] < baseline["size_bytes"]


def test_importing_the_pipeline_does_not_load_torch():
    probe = ("import sys; import harness.optimize.pipeline, harness.optimize.artifacts, harness.optimize.variants; "
             "print(sorted(m for m in ('torch', 'litert_torch', 'ai_edge_litert') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _mediapipe_wheel() -> Path | None:
    """MediaPipe 0.10.21's wheel ships real third-party .tflite files; .ci/run downloads it
    (no deps, nothing installed) into BENCH_TEST_WHEELS. Tests read the models straight out of it."""
    folder = os.environ.get("BENCH_TEST_WHEELS")
    wheels = sorted(Path(folder).glob("mediapipe-0.10.21-*.whl")) if folder else []
    return wheels[0] if wheels else None


@pytest.mark.skipif(_mediapipe_wheel() is None, reason="set BENCH_TEST_WHEELS to a folder with mediapipe 0.10.21's wheel")
def test_a_real_mediapipe_model_nhwc_fp16_weights_is_measured_and_quantized(tmp_path):
    with zipfile.ZipFile(_mediapipe_wheel()) as wheel:
        model = tmp_path / "hand_landmark_lite.tflite"
        model.write_bytes(wheel.read("mediapipe/modules/hand_landmark/hand_landmark_lite.tflite"))
    source = resolve_model(str(model))
    assert source.kind == "tflite" and source.input_shape == (1, 224, 224, 3)  # NHWC, as shipped
    data = load_dataset(source, max_test=16, max_train=32)
    as_is, dyn8, int8 = Pipeline(source, data, tmp_path / "cache").build_all(
        [VariantSpec(), parse_variant("dynamic_int8"), parse_variant("int8")])
    assert as_is.sha256 == sha256_file(model)
    # Its weights are fp16 behind DEQUANTIZE ops; quantized variants are still smaller.
    assert dyn8.size_bytes < as_is.size_bytes and int8.size_bytes < as_is.size_bytes
    for variant in (dyn8, int8):
        assert variant.metadata["accuracy"]["agreement"] is not None
        assert tflite_predict(variant.path, data.x_test[:2]).shape[0] == 2
