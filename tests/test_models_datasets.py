"""Model sources (built-in, torchvision, user factory, TorchScript, torch.export, .tflite) and the
datasets prepared for them. Small inputs and one forward pass each: real models, lean runtime."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.optimize.convert import convert_to_tflite
from models.datasets import IMAGENET_MEAN, IMAGENET_STD, load_dataset
from models.errors import ModelInputError
from models.registry import BUILTIN_MODEL_NAMES, resolve_model, sha256_file
from models.torchvision_models import TORCHVISION_ARCHITECTURES

SMALL_RGB_SHAPE = (1, 3, 64, 64)
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------- the seam


def _imported_packages(path: Path) -> set[str]:
    """Top-level package of every import in a module, lazy imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_models_imports_nothing_from_harness():
    # harness imports models; the other way round would make one tangle of the two packages.
    modules = sorted(MODELS_DIR.glob("*.py"))
    assert len(modules) > 5
    assert {p.name for p in modules if "harness" in _imported_packages(p)} == set()


def test_bad_model_input_is_bad_input_to_harness():
    from harness.errors import BAD_INPUT

    with pytest.raises(BAD_INPUT):
        resolve_model("resnet9000")


# ---------------------------------------------------------------- built-in names


def test_builtin_names_resolve_and_fingerprint_without_loading_torch():
    probe = (
        "import sys; from models.registry import BUILTIN_MODEL_NAMES, resolve_model; "
        "[resolve_model(n).fingerprint() for n in BUILTIN_MODEL_NAMES]; "
        "print(sorted(m for m in ('torch', 'torchvision', 'ai_edge_litert') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(TORCHVISION_ARCHITECTURES))
def test_torchvision_architecture_builds_random_init_and_runs(name):
    import torch

    source = resolve_model(name, input_shape=SMALL_RGB_SHAPE)
    assert (source.kind, source.input_shape, source.num_classes) == ("torchvision", SMALL_RGB_SHAPE, 1000)
    model = source.load_torch(seed=0)
    assert not model.training
    with torch.no_grad():
        logits = model(torch.zeros(SMALL_RGB_SHAPE) + 0.5)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()


def test_torchvision_random_init_follows_the_seed_and_leaves_the_global_rng_alone():
    import torch

    source = resolve_model("mobilenet_v3_small")
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = source.load_torch(seed=0).state_dict()
    assert torch.equal(torch.rand(1), expected_next)  # building did not consume the global stream
    again = source.load_torch(seed=0).state_dict()
    other = source.load_torch(seed=1).state_dict()
    key = "features.0.0.weight"
    assert torch.equal(first[key], again[key])
    assert not torch.equal(first[key], other[key])
    assert source.fingerprint(seed=0) != source.fingerprint(seed=1)
    assert source.fingerprint(seed=0) == resolve_model("mobilenet_v3_small").fingerprint(seed=0)


def test_state_dict_weights_decide_the_class_count_and_the_parameters(tmp_path):
    import torch
    import torchvision

    torch.manual_seed(7)
    trained = torchvision.models.resnet18(weights=None, num_classes=10)
    weights = tmp_path / "resnet18-10.pth"
    # DataParallel-style "module." prefixes inside a checkpoint dict are accepted.
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, weights)

    source = resolve_model("resnet18", weights=weights, input_shape=SMALL_RGB_SHAPE)
    assert source.num_classes == 10
    loaded = source.load_torch(seed=5)
    assert torch.equal(loaded.fc.weight, trained.fc.weight)
    assert torch.equal(loaded.conv1.weight, trained.conv1.weight)
    fingerprint = source.fingerprint(seed=5)
    assert fingerprint["weights_sha256"] == sha256_file(weights)
    assert "seed" not in fingerprint  # the weights, not the seed, decide this model


def test_weights_that_do_not_fit_are_one_line_user_errors(tmp_path):
    import torch
    import torchvision

    other_arch = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), other_arch)
    with pytest.raises(ModelInputError, match=r"do not fit resnet18") as raised:
        resolve_model("resnet18", weights=other_arch)
    _one_line(raised)

    truncated = tmp_path / "broken.pth"
    truncated.write_bytes(other_arch.read_bytes()[:1000])
    with pytest.raises(ModelInputError, match=r"not a loadable state dict") as raised:
        resolve_model("mobilenet_v2", weights=truncated)
    _one_line(raised)

    with pytest.raises(ModelInputError, match=r"weights file .*missing\.pth.* not found"):
        resolve_model("resnet50", weights=tmp_path / "missing.pth")


def test_unknown_names_missing_files_and_bad_shapes_are_one_line_user_errors(tmp_path):
    with pytest.raises(ModelInputError, match=r"unknown model 'resnet9000'; known models: digits_cnn, mobilenet_v2") as raised:
        resolve_model("resnet9000")
    assert all(name in _one_line(raised) for name in BUILTIN_MODEL_NAMES)
    with pytest.raises(ModelInputError, match=r"model file .*nowhere\.tflite.* not found"):
        resolve_model(str(tmp_path / "nowhere.tflite"))
    with pytest.raises(ModelInputError, match=r"model file .*gone\.pt2.* not found"):
        resolve_model(str(tmp_path / "gone.pt2"))
    with pytest.raises(ModelInputError, match=r"bad model factory 'pkg:'"):
        resolve_model("pkg:")
    with pytest.raises(ModelInputError, match=r"takes an RGB image input"):
        resolve_model("resnet50", input_shape=(1, 1, 224, 224))
    with pytest.raises(ModelInputError, match=r"digits_cnn takes input shape 1,1,8,8"):
        resolve_model("digits_cnn", input_shape=(1, 1, 16, 16))
    with pytest.raises(ModelInputError, match=r"batch-1"):
        resolve_model("resnet18", input_shape=(4, 3, 64, 64))


# ---------------------------------------------------------------- digits_cnn


@pytest.mark.slow
def test_digits_cnn_is_the_wider_net_trained_to_high_accuracy_and_handed_out_as_copies():
    import torch

    source = resolve_model("digits_cnn")
    assert (source.kind, source.input_shape, source.num_classes) == ("builtin", (1, 1, 8, 8), 10)
    model = source.load_torch(seed=0)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 32), (32, 64)]
    assert model.classifier.in_features == 64 * 4 * 4

    data = load_dataset(source)
    assert data.name == "digits" and data.num_classes == 10 and data.x_test.shape == (360, 1, 8, 8)
    with torch.no_grad():
        top1 = float((model(torch.from_numpy(data.x_test)).argmax(1).numpy() == data.y_test).mean())
    assert top1 >= 0.98

    # The second load reuses this process's training but must be an independent copy.
    again = source.load_torch(seed=0)
    assert torch.equal(again.classifier.weight, model.classifier.weight)
    with torch.no_grad():
        again.classifier.weight.zero_()
    assert model.classifier.weight.abs().sum() > 0
    assert source.fingerprint()["train_epochs"] == 20


# ---------------------------------------------------------------- user models


FACTORY_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn

    INPUT_SHAPE = (1, 3, 16, 16)

    def make_model():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def make_not_a_model():
        return "surprise"

    def make_flat_model():
        return nn.Linear(12, 4)
    """
)


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A user module `h1_user_models` in tmp_path, importable for this test only."""
    module_file = tmp_path / "h1_user_models.py"
    module_file.write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "h1_user_models", raising=False)
    yield module_file
    sys.modules.pop("h1_user_models", None)


def test_factory_model_resolves_with_its_declared_shape_and_probed_classes(factory_module):
    import torch

    source = resolve_model("h1_user_models:make_model")
    assert (source.kind, source.input_shape, source.num_classes) == ("factory", (1, 3, 16, 16), 5)
    first, again = source.load_torch(seed=3), source.load_torch(seed=3)
    assert torch.equal(first[0].weight, again[0].weight)
    assert not torch.equal(first[0].weight, source.load_torch(seed=4)[0].weight)
    fingerprint = source.fingerprint(seed=3)
    assert fingerprint["builder_source_sha256"] == sha256_file(factory_module)
    assert fingerprint["seed"] == 3

    # --input-shape overrides the declared one; a non-image model gets layout "other".
    flat = resolve_model("h1_user_models:make_flat_model", input_shape=(1, 12))
    assert (flat.input_shape, flat.num_classes, flat.input_layout) == ((1, 12), 4, "other")


def test_bad_factories_are_one_line_user_errors(factory_module):
    cases = {
        "h1_user_models:missing": r"has no 'missing'",
        "h1_no_such_module:make": r"cannot import 'h1_no_such_module'",
        "h1_user_models:make_not_a_model": r"returned a str, not a torch nn.Module",
        "h1_user_models:INPUT_SHAPE": r"is a tuple, not a function",
    }
    for factory, message in cases.items():
        with pytest.raises(ModelInputError, match=message) as raised:
            resolve_model(factory)
        _one_line(raised)
    with pytest.raises(ModelInputError, match=r"rejects input shape 1,3,16,16 .*--input-shape") as raised:
        resolve_model("h1_user_models:make_flat_model")
    _one_line(raised)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.9+ marks TorchScript deprecated
def test_torchscript_file_needs_an_input_shape_and_keeps_its_outputs(tmp_path):
    import torch

    torch.manual_seed(0)
    original = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 7)).eval()
    path = tmp_path / "scripted.pt"
    example = torch.rand(1, 3, 8, 8)
    torch.jit.save(torch.jit.trace(original, example), str(path))

    with pytest.raises(ModelInputError, match=r"does not record its input shape; give it with --input-shape"):
        resolve_model(str(path))
    source = resolve_model(str(path), input_shape=(1, 3, 8, 8))
    assert (source.kind, source.num_classes) == ("torchscript", 7)
    model = source.load_torch()
    batch = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(example), original(example), atol=1e-6)
        assert torch.allclose(model(batch), original(batch), atol=1e-6)
    # litert-torch refuses ScriptModules; the loaded model is an export program, so it converts.
    report = convert_to_tflite(model, batch.numpy(), tmp_path / "scripted.tflite", "scripted")
    assert report.relative_diff <= 1e-4
    assert source.fingerprint()["model_sha256"] == sha256_file(path)
    assert "seed" not in source.fingerprint()

    not_a_script = tmp_path / "weights.pt"
    torch.save(original.state_dict(), not_a_script)
    with pytest.raises(ModelInputError, match=r"is not a TorchScript file .*--weights") as raised:
        resolve_model(str(not_a_script), input_shape=(1, 3, 8, 8))
    _one_line(raised)


def test_exported_program_brings_its_own_input_shape_and_accepts_eval(tmp_path):
    import torch

    torch.manual_seed(0)
    original = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 6)
    ).eval()
    example = torch.rand(1, 3, 12, 12)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(original, (example,)), str(path))

    source = resolve_model(str(path))
    assert (source.kind, source.input_shape, source.num_classes) == ("export", (1, 3, 12, 12), 6)
    model = source.load_torch().eval()  # a bare ep.module() refuses .eval()
    batch = torch.rand(3, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(model(example), original(example), atol=1e-6)
        # Exported with a static batch of 1, yet evaluation and parity checks feed batches.
        assert torch.allclose(model(batch), original(batch), atol=1e-6)
    assert source.fingerprint()["model_sha256"] == sha256_file(path)


@pytest.fixture(scope="module")
def nhwc_tflite(tmp_path_factory) -> Path:
    """A real .tflite with an NHWC float input, as third-party image models have."""
    import torch

    class NhwcClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)
            )

        def forward(self, images_nhwc: torch.Tensor) -> torch.Tensor:
            return self.body(images_nhwc.permute(0, 3, 1, 2))

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tflite") / "nhwc_model.tflite"
    convert_to_tflite(NhwcClassifier().eval(), np.random.default_rng(0).random((2, 24, 20, 3), dtype=np.float32), path)
    return path


def test_tflite_file_resolves_to_its_own_nhwc_signature(nhwc_tflite):
    source = resolve_model(str(nhwc_tflite))
    assert (source.kind, source.input_shape, source.input_layout, source.num_classes) == ("tflite", (1, 24, 20, 3), "NHWC", 4)
    assert source.tflite_path == nhwc_tflite.resolve()
    assert source.fingerprint()["model_sha256"] == sha256_file(nhwc_tflite)
    with pytest.raises(ModelInputError, match=r"is a \.tflite file with no PyTorch model"):
        source.load_torch()
    with pytest.raises(ModelInputError, match=r"--weights does not apply"):
        resolve_model(str(nhwc_tflite), weights=nhwc_tflite)
    with pytest.raises(ModelInputError, match=r"fixed input shape 1,24,20,3"):
        resolve_model(str(nhwc_tflite), input_shape=(1, 3, 24, 20))

    # Its data is NCHW with the tflite's height and width, pixels in [0, 1].
    data = load_dataset(source, max_test=6, max_train=3)
    assert data.x_test.shape == (6, 3, 24, 20) and data.x_train.shape == (3, 3, 24, 20)
    assert data.normalization == "unit" and 0.0 <= data.x_test.min() and data.x_test.max() <= 1.0
    assert data.y_test is None and data.num_classes == 4


def test_not_a_tflite_is_a_user_error(tmp_path):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelInputError, match=r"is not a readable \.tflite model") as raised:
        resolve_model(str(fake))
    _one_line(raised)


# ---------------------------------------------------------------- datasets


def _write_image_folder(root: Path, colours: dict[str, tuple[int, int, int]], per_class: int) -> Path:
    from PIL import Image

    for class_name, colour in colours.items():
        (root / class_name).mkdir(parents=True)
        for index in range(per_class):
            # Non-square so the resize + center-crop path is exercised.
            Image.new("RGB", (40 + index, 30), colour).save(root / class_name / f"{index}.png")
    return root


def test_image_folder_is_split_stratified_resized_and_imagenet_normalized(tmp_path):
    folder = _write_image_folder(tmp_path / "data", {"blue": (0, 0, 255), "red": (255, 0, 0)}, per_class=10)
    (folder / "empty_class").mkdir()  # no images: not a class
    (folder / "red" / "notes.txt").write_text("not an image")
    source = resolve_model("resnet18", input_shape=(1, 3, 32, 32))

    data = load_dataset(source, folder, seed=0)
    assert data.name == f"imagefolder:{folder.resolve()}"
    assert data.class_names == ("blue", "red") and data.num_classes == 2
    assert data.x_train.shape == (16, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert sorted(data.y_test.tolist()) == [0, 0, 1, 1]  # stratified: both classes held out
    assert data.y_train.dtype == np.int64 and data.x_test.dtype == np.float32
    # Label decides colour: a red image's red channel is (1 - mean) / std, its blue channel -mean / std.
    red = data.x_test[data.y_test == 1][0]
    assert red[0].mean() == pytest.approx((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], abs=1e-5)
    assert red[2].mean() == pytest.approx(-IMAGENET_MEAN[2] / IMAGENET_STD[2], abs=1e-5)

    capped = load_dataset(source, folder, max_test=1, max_train=5)
    assert len(capped.x_test) == 1 and len(capped.x_train) == 5
    assert load_dataset(source, folder, seed=1).fingerprint() != data.fingerprint()
    assert load_dataset(source, folder, seed=0).fingerprint() == data.fingerprint()


def test_bad_image_folders_are_one_line_user_errors(tmp_path):
    source = resolve_model("resnet18", input_shape=(1, 3, 32, 32))
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "readme.txt").write_text("no pictures")
    one_class = _write_image_folder(tmp_path / "one", {"only": (9, 9, 9)}, per_class=3)
    cases = {
        tmp_path / "missing": r"data directory .*missing.* not found",
        tmp_path / "empty": r"has no images in class subfolders",
        one_class: r"only 1 class \('only'\).*at least 2",
    }
    for data_dir, message in cases.items():
        with pytest.raises(ModelInputError, match=message) as raised:
            load_dataset(source, data_dir)
        _one_line(raised)


def test_sample_images_are_real_deterministic_crops_without_labels():
    source = resolve_model("mobilenet_v2", input_shape=SMALL_RGB_SHAPE)
    data = load_dataset(source, max_test=12, max_train=4, seed=0)
    assert data.name == "sample_images" and data.y_test is None and data.y_train is None
    assert data.x_test.shape == (12, 3, 64, 64) and data.x_train.shape == (4, 3, 64, 64)
    assert data.normalization == "imagenet" and data.num_classes == 1000
    # Real photo content: textured, and crops differ from each other and from the train crops.
    assert data.x_test.std() > 0.3
    assert len({crop.tobytes() for crop in data.x_test}) == 12
    assert not any(np.array_equal(train, test) for train in data.x_train for test in data.x_test)
    again = load_dataset(source, max_test=12, max_train=4, seed=0)
    assert np.array_equal(again.x_test, data.x_test) and again.fingerprint() == data.fingerprint()
    assert not np.array_equal(load_dataset(source, max_test=12, max_train=4, seed=1).x_test, data.x_test)


def test_sample_images_follow_a_grayscale_factory_model_input(factory_module, tmp_path):
    module_text = factory_module.read_text() + textwrap.dedent(
        """
        def make_gray():
            return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 8 * 6, 3))
        """
    )
    factory_module.write_text(module_text)
    source = resolve_model("h1_user_models:make_gray", input_shape=(1, 1, 10, 8))
    data = load_dataset(source, max_test=3, max_train=0)
    assert data.x_test.shape == (3, 1, 10, 8) and data.x_train is None
    assert data.normalization == "unit" and 0.0 <= data.x_test.min() and data.x_test.max() <= 1.0


def test_provided_inputs_file_is_split_and_checked(factory_module, tmp_path):
    source = resolve_model("h1_user_models:make_model")
    inputs = np.random.default_rng(0).random((10, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    data = load_dataset(source, tmp_path / "inputs.npy")
    assert data.x_test.shape == (2, 3, 16, 16) and data.x_train.shape == (8, 3, 16, 16) and data.y_test is None
    # Every provided input lands in exactly one split, unchanged.
    together = np.concatenate([data.x_train, data.x_test])
    assert sorted(x.tobytes() for x in together) == sorted(x.tobytes() for x in inputs)

    np.save(tmp_path / "wrong.npy", inputs[:, :, :8])
    with pytest.raises(ModelInputError, match=r"holds shape 10,3,8,16; model .* needs N,3,16,16") as raised:
        load_dataset(source, tmp_path / "wrong.npy")
    _one_line(raised)
