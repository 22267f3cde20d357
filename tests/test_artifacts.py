"""digits_cnn: train, convert to .tflite, verify with LiteRT, cache by recipe."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.artifacts import (
    METADATA_FILENAME,
    Artifact,
    build_artifact,
    default_cache_dir,
    recipe_for,
    recipe_key,
    sha256_file,
)
from harness.errors import UserError
from models import registry


@pytest.fixture(scope="session")
def digits_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifact-cache")


@pytest.fixture(scope="session")
def digits_artifact(digits_cache_dir) -> Artifact:
    """The one train + convert of this test session."""
    return build_artifact("digits_cnn", "fp32", digits_cache_dir)


@pytest.mark.slow
def test_first_build_is_not_from_cache_and_lives_under_its_recipe_key(digits_artifact, digits_cache_dir):
    key = recipe_key(recipe_for("digits_cnn", "fp32"))
    assert digits_artifact.cached is False
    assert digits_artifact.name == "digits_cnn-fp32"
    assert digits_artifact.path == digits_cache_dir / key[:16] / "digits_cnn-fp32.tflite"
    assert digits_artifact.metadata["recipe_key"] == key
    # No staging directories are left behind.
    assert [p.name for p in digits_cache_dir.iterdir()] == [key[:16]]


@pytest.mark.slow
def test_tflite_top1_is_high_and_matches_an_independent_litert_run(digits_artifact):
    from harness.convert import tflite_outputs
    from models.digits import digits_dataset

    data = digits_dataset()
    measured_top1 = float(np.mean(tflite_outputs(digits_artifact.path, data.x_test).argmax(axis=1) == data.y_test))
    top1 = digits_artifact.metadata["test_top1"]
    assert measured_top1 == top1["tflite"]
    assert top1["tflite"] >= 0.9
    # fp32 conversion may flip at most one borderline test image.
    assert abs(top1["tflite"] - top1["torch"]) <= 1 / len(data.y_test)


@pytest.mark.slow
def test_parity_figures_are_fp32_noise(digits_artifact):
    parity = digits_artifact.metadata["parity"]
    assert parity["sample_count"] == digits_artifact.metadata["test_samples"] == 360
    assert parity["output_scale"] > 1.0  # trained logits, not a dead model
    assert parity["max_abs_diff"] <= 1e-4 * parity["output_scale"]
    assert parity["relative_diff"] == pytest.approx(parity["max_abs_diff"] / parity["output_scale"])
    assert parity["cosine_similarity"] >= 0.99999


@pytest.mark.slow
def test_metadata_json_beside_the_tflite_describes_it(digits_artifact):
    document = json.loads((digits_artifact.path.parent / METADATA_FILENAME).read_text())
    assert document["name"] == "digits_cnn-fp32"
    assert document["filename"] == digits_artifact.path.name
    assert document["sha256"] == sha256_file(digits_artifact.path) == digits_artifact.sha256
    assert document["size_bytes"] == digits_artifact.path.stat().st_size == digits_artifact.size_bytes
    metadata = document["metadata"]
    assert metadata["input_shape"] == [1, 1, 8, 8]
    assert metadata["parent"] is None
    assert metadata["parameters"] == {"seed": 0, "epochs": registry.get_model_spec("digits_cnn").default_epochs}
    assert metadata["recipe"]["versions"]["torch"].startswith("2.")
    assert set(metadata["recipe"]["source_sha256"]) == {"models.digits", "harness.convert"}
    assert metadata["built_at"].endswith("+00:00")
    # The .tflite is a flatbuffer with the TFLite file identifier at bytes 4..8.
    assert digits_artifact.path.read_bytes()[4:8] == b"TFL3"


@pytest.mark.slow
def test_second_call_is_served_from_cache_without_training(digits_artifact, digits_cache_dir, monkeypatch):
    def training_must_not_run(seed, epochs):
        raise AssertionError("a cache hit must not train")

    spec = registry.get_model_spec("digits_cnn")
    monkeypatch.setitem(registry._SPECS, "digits_cnn", dataclasses.replace(spec, builder=training_must_not_run))
    mtime_ns_before = digits_artifact.path.stat().st_mtime_ns
    again = build_artifact("digits_cnn", "fp32", digits_cache_dir)
    assert again.cached is True
    assert again.sha256 == digits_artifact.sha256
    assert again.metadata["built_at"] == digits_artifact.metadata["built_at"]
    assert again.path.stat().st_mtime_ns == mtime_ns_before


@pytest.mark.slow
def test_damaged_cache_entry_is_rebuilt_to_the_same_bytes(digits_artifact, tmp_path):
    """A fresh, independent build with the same recipe gives the same sha256 (deterministic
    training and conversion), and a truncated cached .tflite is never served."""
    cache_dir = tmp_path / "cache"
    shutil.copytree(digits_artifact.path.parent, cache_dir / digits_artifact.path.parent.name)
    damaged_tflite = cache_dir / digits_artifact.path.parent.name / digits_artifact.path.name
    damaged_tflite.write_bytes(damaged_tflite.read_bytes()[:100])

    rebuilt = build_artifact("digits_cnn", "fp32", cache_dir)
    assert rebuilt.cached is False
    assert rebuilt.path == damaged_tflite
    assert sha256_file(rebuilt.path) == rebuilt.sha256 == digits_artifact.sha256
    assert rebuilt.metadata["test_top1"] == digits_artifact.metadata["test_top1"]


@pytest.mark.slow
def test_parity_error_names_the_model_and_removes_the_file(tmp_path):
    import torch

    from harness.convert import ParityError, convert_to_tflite
    from models.digits import DigitsCNN, digits_dataset

    torch.manual_seed(0)
    out_path = tmp_path / "strict.tflite"
    # fp32 XNNPACK sums in another order than torch, so a zero tolerance must trip the check.
    with pytest.raises(ParityError, match=r"strict_model: .*max_abs_diff=") as raised:
        convert_to_tflite(DigitsCNN(), digits_dataset().x_test[:16], out_path, "strict_model", relative_tolerance=0.0)
    assert "output_scale=" in str(raised.value)
    assert not out_path.exists()


def test_recipe_key_changes_with_seed_epochs_and_model_source():
    base = recipe_for("digits_cnn", "fp32")
    assert recipe_key(base) == recipe_key(recipe_for("digits_cnn", "fp32"))
    assert recipe_key(recipe_for("digits_cnn", "fp32", seed=1)) != recipe_key(base)
    assert recipe_key(recipe_for("digits_cnn", "fp32", epochs=3)) != recipe_key(base)
    edited_source = {**base, "source_sha256": {**base["source_sha256"], "models.digits": "0" * 64}}
    assert recipe_key(edited_source) != recipe_key(base)


def test_unknown_model_is_a_user_error_listing_known_models(tmp_path):
    with pytest.raises(UserError, match=r"unknown model 'resnet9000'; known models: .*digits_cnn") as raised:
        build_artifact("resnet9000", "fp32", tmp_path)
    assert "\n" not in str(raised.value)
    assert not any(tmp_path.iterdir())


def test_unknown_variant_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"unknown variant 'int3'; known variants: fp32"):
        build_artifact("digits_cnn", "int3", tmp_path)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("BENCH_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "bench" / "artifacts"


def test_importing_artifacts_and_computing_a_key_does_not_load_torch():
    probe = (
        "import sys; from harness.artifacts import recipe_for, recipe_key; "
        "recipe_key(recipe_for('digits_cnn')); "
        "print(sorted(m for m in ('torch', 'litert_torch', 'ai_edge_litert') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
