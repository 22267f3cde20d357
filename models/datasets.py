"""Evaluation and fine-tuning data for a model: real inputs only, never synthetic noise.

- digits_cnn: scikit-learn's bundled 8x8 digits (labelled, the fixed split of models.digits);
- `--data DIR`: an ImageFolder tree (one subfolder per class), resized + center-cropped to the
  model's input and normalized, split stratified into train / held-out test;
- `--data FILE.npy`: inputs the user provides (no labels), in the model's own input layout;
- anything else: random crops and flips of scikit-learn's two sample photos (china.jpg,
  flower.jpg). No labels, so accuracy becomes agreement with the baseline's predictions.

Arrays are float32 NCHW whatever the model's layout: a NHWC .tflite gets its inputs transposed
at inference time (harness.optimize.evaluate), so every model of one comparison sees identical pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ModelInputError
from models.registry import DIGITS_MODEL_NAME, ModelSource

# Extensions torchvision's ImageFolder accepts.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "unit")
TEST_FRACTION = 0.2
DEFAULT_MAX_TEST = 500
DEFAULT_MAX_TRAIN = 512
# The usual ImageNet eval transform: resize to 256 then center-crop 224, i.e. crop 87.5 %.
CENTER_CROP_FRACTION = 0.875
# Random crops of the sample photos: fraction of the photo's area and aspect-ratio range
# (RandomResizedCrop's defaults, lower bound raised so crops still show recognisable content).
SAMPLE_CROP_AREA = (0.1, 1.0)
SAMPLE_CROP_ASPECT = (3 / 4, 4 / 3)
# The train crops use a different random stream than the test crops.
_SAMPLE_TRAIN_SEED_OFFSET = 1_000_003
_PIXEL_MAX = 255.0


@dataclass
class EvalData:
    """One dataset prepared for one model's input: float32 NCHW arrays, int64 labels or None."""

    name: str  # "digits", "imagefolder:<dir>", "inputs:<file>", "sample_images"
    x_train: np.ndarray | None  # for fine-tuning / calibration (None when there is none)
    y_train: np.ndarray | None
    x_test: np.ndarray  # the held-out split
    y_test: np.ndarray | None  # None: no labels -> accuracy is agreement with the baseline
    num_classes: int | None
    normalization: str = "unit"  # "imagenet" (mean/std) or "unit" (pixels in [0, 1])
    class_names: tuple[str, ...] | None = None  # ImageFolder: label i is class_names[i]

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity: name, sizes and a sha256 over every array's bytes."""
        from models.inputs import batch_digest_parts

        digest = hashlib.sha256()
        arrays = [*batch_digest_parts(self.x_train), self.y_train, *batch_digest_parts(self.x_test), self.y_test]
        for array in arrays:
            if array is None:
                digest.update(b"none")
            else:
                digest.update(str((array.dtype.str, array.shape)).encode())
                digest.update(np.ascontiguousarray(array).tobytes())
        return {
            "name": self.name,
            "train_samples": 0 if self.x_train is None else int(len(self.x_train)),
            "test_samples": int(len(self.x_test)),
            "labelled": self.y_test is not None,
            "num_classes": self.num_classes,
            "normalization": self.normalization,
            "class_names": list(self.class_names) if self.class_names else None,
            "arrays_sha256": digest.hexdigest(),
        }


@dataclass(frozen=True)
class ImageGeometry:
    """Channels and size of the model's image input, whatever its layout."""

    channels: int
    height: int
    width: int


def load_dataset(
    source: ModelSource,
    data_dir: Path | None = None,
    *,
    max_test: int = DEFAULT_MAX_TEST,
    max_train: int = DEFAULT_MAX_TRAIN,
    seed: int = 0,
    normalization: str | None = None,
) -> EvalData:
    """The data to fine-tune, calibrate and evaluate `source` on (see the module docstring).

    `max_test` / `max_train` cap the splits (digits is small and always whole but for max_test);
    `seed` decides the split and the crops. `normalization` defaults to "imagenet" for torch RGB
    models and "unit" ([0, 1]) for digits_cnn and for .tflite files, whose preprocessing bench
    cannot know (a [0, 1] input also suits the common uint8 input with scale 1/255).
    ModelInputError: data dir missing, no images, fewer than 2 classes, inputs of the wrong shape.
    """
    if data_dir is None and source.name == DIGITS_MODEL_NAME and source.kind == "builtin":
        return _digits(max_test)
    if source.inputs:
        return _token_data(source, Path(data_dir) if data_dir is not None else None,
                           max_test=max_test, max_train=max_train, seed=seed)
    if data_dir is not None and Path(data_dir).suffix.lower() == ".npy":
        return _provided_inputs(source, Path(data_dir), max_test=max_test, max_train=max_train, seed=seed)
    geometry = image_geometry(source)
    normalization = normalization or default_normalization(source, geometry)
    if normalization not in NORMALIZATIONS:
        raise ModelInputError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if data_dir is not None:
        return _image_folder(Path(data_dir), geometry, normalization, max_test=max_test, max_train=max_train, seed=seed)
    return _sample_images(source, geometry, normalization, max_test=max_test, max_train=max_train, seed=seed)


def image_geometry(source: ModelSource) -> ImageGeometry:
    """(channels, height, width) of the model's image input; ModelInputError when it takes no image."""
    shape = source.input_shape
    if len(shape) == 4 and source.input_layout == "NHWC":
        return ImageGeometry(channels=shape[3], height=shape[1], width=shape[2])
    if len(shape) == 4 and source.input_layout == "NCHW":
        return ImageGeometry(channels=shape[1], height=shape[2], width=shape[3])
    raise ModelInputError(
        f"model {source.name!r} takes input shape {','.join(map(str, shape))}, not an image; "
        "give its inputs as a .npy file with --data FILE.npy"
    )


def default_normalization(source: ModelSource, geometry: ImageGeometry) -> str:
    """ImageNet mean/std for torch RGB models (torchvision's convention), else [0, 1] pixels."""
    if source.kind in ("torchvision", "factory", "torchscript", "export") and geometry.channels == 3:
        return "imagenet"
    return "unit"


# ---------------------------------------------------------------- the four sources


def _digits(max_test: int) -> EvalData:
    from models.digits_data import DIGITS_NUM_CLASSES, digits_dataset

    data = digits_dataset()
    return EvalData(
        name="digits",
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test[:max_test],
        y_test=data.y_test[:max_test],
        num_classes=DIGITS_NUM_CLASSES,
        normalization="unit",
    )


def _image_folder(
    data_dir: Path, geometry: ImageGeometry, normalization: str, *, max_test: int, max_train: int, seed: int
) -> EvalData:
    class_names, paths, labels = scan_image_folder(data_dir)
    train_index, test_index = _stratified_split(labels, seed)
    train_index, test_index = train_index[:max_train], test_index[:max_test]

    def load(indices: np.ndarray) -> np.ndarray:
        images = [_center_crop(_open_image(paths[i], geometry.channels), geometry) for i in indices]
        return _to_nchw(np.stack(images), normalization)

    return EvalData(
        name=f"imagefolder:{data_dir.resolve()}",
        x_train=load(train_index) if len(train_index) else None,
        y_train=labels[train_index] if len(train_index) else None,
        x_test=load(test_index),
        y_test=labels[test_index],
        num_classes=len(class_names),
        normalization=normalization,
        class_names=tuple(class_names),
    )


def _sample_images(
    source: ModelSource, geometry: ImageGeometry, normalization: str, *, max_test: int, max_train: int, seed: int
) -> EvalData:
    from sklearn.datasets import load_sample_images

    photos = [_to_channels(image, geometry.channels) for image in load_sample_images().images]
    x_test = _random_crops(photos, geometry, max_test, np.random.default_rng(seed))
    x_train = _random_crops(photos, geometry, max_train, np.random.default_rng(seed + _SAMPLE_TRAIN_SEED_OFFSET))
    return EvalData(
        name="sample_images",
        x_train=_to_nchw(x_train, normalization) if max_train > 0 else None,
        y_train=None,
        x_test=_to_nchw(x_test, normalization),
        y_test=None,
        num_classes=source.num_classes,
        normalization=normalization,
    )


def _provided_inputs(source: ModelSource, path: Path, *, max_test: int, max_train: int, seed: int) -> EvalData:
    """A .npy of N inputs in the model's own layout; split like the others, no labels."""
    if not path.is_file():
        raise ModelInputError(f"inputs file {str(path)!r} not found; give --data an ImageFolder directory or a .npy file")
    try:
        inputs = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModelInputError(f"inputs file {str(path)!r} is not a readable .npy array ({error})") from None
    expected = tuple(source.input_shape[1:])
    if inputs.ndim != len(source.input_shape) or tuple(inputs.shape[1:]) != expected or len(inputs) < 1:
        raise ModelInputError(
            f"inputs file {str(path)!r} holds shape {','.join(map(str, inputs.shape))}; "
            f"model {source.name!r} needs N,{','.join(map(str, expected))}"
        )
    inputs = inputs.astype(np.float32)
    if source.input_layout == "NHWC":
        inputs = inputs.transpose(0, 3, 1, 2)  # EvalData is always NCHW
    order = np.random.default_rng(seed).permutation(len(inputs))
    test_count = max(1, int(round(len(inputs) * TEST_FRACTION)))
    test_index, train_index = order[:test_count][:max_test], order[test_count:][:max_train]
    return EvalData(
        name=f"inputs:{path.resolve()}",
        x_train=np.ascontiguousarray(inputs[train_index]) if len(train_index) else None,
        y_train=None,
        x_test=np.ascontiguousarray(inputs[test_index]),
        y_test=None,
        num_classes=source.num_classes,
        normalization="as given",
    )


def _token_data(source: ModelSource, path: Path | None, *, max_test: int, max_train: int, seed: int) -> EvalData:
    """A model of token (or several) inputs: the labelled samples of a .jsonl file, or generated
    sequences (models.inputs.generated_inputs) judged by agreement with the baseline."""
    from models.inputs import generated_inputs

    if path is None:
        return EvalData(
            name="generated_tokens",
            x_train=generated_inputs(source.inputs, max_train, seed + _SAMPLE_TRAIN_SEED_OFFSET) if max_train else None,
            y_train=None,
            x_test=generated_inputs(source.inputs, max_test, seed),
            y_test=None,
            num_classes=source.num_classes,
            normalization="as given",
        )
    if path.suffix.lower() != ".jsonl":
        raise ModelInputError(f"--data {str(path)!r}: a model of token inputs reads a .jsonl file (one sample per "
                              f"line: {', '.join(s.name for s in source.inputs)} and label)")
    inputs, labels = read_jsonl_samples(path, source)
    order = np.random.default_rng(seed).permutation(len(labels))
    test_count = max(1, int(round(len(labels) * TEST_FRACTION)))
    test_index, train_index = np.sort(order[:test_count][:max_test]), np.sort(order[test_count:][:max_train])
    labelled = labels is not None and not np.any(labels < 0)
    return EvalData(
        name=f"jsonl:{path.resolve()}",
        x_train=inputs[train_index] if len(train_index) else None,
        y_train=labels[train_index] if labelled and len(train_index) else None,
        x_test=inputs[test_index],
        y_test=labels[test_index] if labelled else None,
        num_classes=source.num_classes,
        normalization="as given",
    )


def read_jsonl_samples(path: Path, source: ModelSource):
    """(InputBatch, int64 labels; -1 where a line has none) from a .jsonl of token samples.

    Each line is an object with a list per input (token ids, mask...) and "label". Sequences are
    padded with 0 or cut to the input's length, as a tokenizer's max_length would."""
    import json

    from models.inputs import InputBatch

    if not path.is_file():
        raise ModelInputError(f"--data {str(path)!r} not found; give a .jsonl file of token samples")
    columns: dict[str, list] = {spec.name: [] for spec in source.inputs}
    labels: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ModelInputError(f"--data {str(path)!r} line {number} is not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ModelInputError(f"--data {str(path)!r} line {number} is not an object of inputs and label")
            for spec in source.inputs:
                if spec.name not in record:
                    raise ModelInputError(f"--data {str(path)!r} line {number} has no {spec.name!r}; each line needs "
                                          f"{', '.join(s.name for s in source.inputs)} (and label)")
                width = int(np.prod(spec.shape[1:]))
                values = np.asarray(record[spec.name]).reshape(-1)[:width]
                columns[spec.name].append(np.pad(values, (0, width - len(values))).reshape(spec.shape[1:]))
            label = record.get("label", record.get("labels"))
            labels.append(-1 if label is None else int(label))
    if not labels:
        raise ModelInputError(f"--data {str(path)!r} has no samples; write one JSON object per line")
    batch = InputBatch({spec.name: np.stack(columns[spec.name]).astype(spec.dtype) for spec in source.inputs})
    return batch, np.asarray(labels, dtype=np.int64)


# ---------------------------------------------------------------- ImageFolder


def scan_image_folder(data_dir: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names, image paths, int64 labels) in ImageFolder's convention: sorted subfolder
    names are classes 0..K-1; images anywhere below a class folder belong to it.

    Subfolders without images are skipped (they are not classes). ModelInputError: missing directory,
    no images, fewer than 2 classes.
    """
    if not data_dir.is_dir():
        raise ModelInputError(f"data directory {str(data_dir)!r} not found; give --data an ImageFolder directory (one subfolder per class)")
    class_names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(entry for entry in data_dir.iterdir() if entry.is_dir() and not entry.name.startswith(".")):
        images = sorted(
            path for path in class_dir.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not images:
            continue
        class_names.append(class_dir.name)
        paths.extend(images)
        labels.extend([len(class_names) - 1] * len(images))
    if not paths:
        raise ModelInputError(
            f"data directory {str(data_dir)!r} has no images in class subfolders "
            f"({', '.join(IMAGE_EXTENSIONS)}); put each class's images in its own subfolder"
        )
    if len(class_names) < 2:
        raise ModelInputError(
            f"data directory {str(data_dir)!r} has images of only 1 class ({class_names[0]!r}); "
            "accuracy needs at least 2 class subfolders"
        )
    return class_names, paths, np.asarray(labels, dtype=np.int64)


def _stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/test indices, stratified when every class has enough images for it."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    try:
        train_index, test_index = train_test_split(indices, test_size=TEST_FRACTION, random_state=seed, stratify=labels)
    except ValueError:
        # A class with a single image (or a test split smaller than the class count) cannot be
        # stratified; a plain seeded shuffle still gives a fair held-out split.
        train_index, test_index = train_test_split(indices, test_size=TEST_FRACTION, random_state=seed)
    return np.asarray(train_index), np.asarray(test_index)


def _open_image(path: Path, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _to_channels(np.asarray(image.convert("RGB")), channels)
    except (OSError, UnidentifiedImageError) as error:
        raise ModelInputError(f"image {str(path)!r} cannot be read ({error}); remove it or replace it") from None


# ---------------------------------------------------------------- pixels


def _to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """HxWx3 uint8 -> HxWxC uint8 for C = 3, 1 (ITU-R 601 luma, as PIL's "L") or 4 (opaque alpha)."""
    if channels == 3:
        return rgb
    if channels == 1:
        luma = rgb.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]
    if channels == 4:
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)], axis=2)
    raise ModelInputError(f"an image input with {channels} channels is not supported; image models take 1, 3 or 4 channels")


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    mode_image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    resized = np.asarray(mode_image.resize((width, height), Image.BILINEAR))
    return resized[:, :, None] if resized.ndim == 2 else resized


def _center_crop(pixels: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """Resize so the crop covers CENTER_CROP_FRACTION of the image, then take the center."""
    image_height, image_width = pixels.shape[:2]
    scale = max(geometry.height / CENTER_CROP_FRACTION / image_height, geometry.width / CENTER_CROP_FRACTION / image_width)
    resized_width = max(geometry.width, int(round(image_width * scale)))
    resized_height = max(geometry.height, int(round(image_height * scale)))
    resized = _resize(pixels, resized_width, resized_height)
    top = (resized_height - geometry.height) // 2
    left = (resized_width - geometry.width) // 2
    return resized[top : top + geometry.height, left : left + geometry.width]


def _random_crops(photos: list[np.ndarray], geometry: ImageGeometry, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` RandomResizedCrop-style crops (random photo, area, aspect, position, flip)."""
    crops = np.empty((count, geometry.height, geometry.width, geometry.channels), dtype=np.uint8)
    for index in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        photo_height, photo_width = photo.shape[:2]
        area = photo_height * photo_width * rng.uniform(*SAMPLE_CROP_AREA)
        aspect = float(np.exp(rng.uniform(np.log(SAMPLE_CROP_ASPECT[0]), np.log(SAMPLE_CROP_ASPECT[1]))))
        crop_width = int(min(photo_width, max(1, round(np.sqrt(area * aspect)))))
        crop_height = int(min(photo_height, max(1, round(np.sqrt(area / aspect)))))
        top = int(rng.integers(photo_height - crop_height + 1))
        left = int(rng.integers(photo_width - crop_width + 1))
        crop = photo[top : top + crop_height, left : left + crop_width]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops[index] = _resize(np.ascontiguousarray(crop), geometry.width, geometry.height)
    return crops


def _to_nchw(pixels_nhwc: np.ndarray, normalization: str) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, [0, 1] then (imagenet) per-channel mean/std."""
    images = pixels_nhwc.astype(np.float32) / _PIXEL_MAX
    if normalization == "imagenet":
        channels = images.shape[3]
        mean = np.asarray(IMAGENET_MEAN if channels == 3 else [np.mean(IMAGENET_MEAN)] * channels, dtype=np.float32)
        std = np.asarray(IMAGENET_STD if channels == 3 else [np.mean(IMAGENET_STD)] * channels, dtype=np.float32)
        images = (images - mean) / std
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
