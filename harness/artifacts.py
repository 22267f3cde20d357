"""Built .tflite artifacts and their content-addressed cache.

The cache key is a sha256 over everything that decides the artifact's bytes (the recipe): model
name, variant, seed, epochs, the source text of the model module and of the converter, and the
versions of the libraries that train and convert. Same recipe -> same directory -> no rebuild.

Importing this module (and loading a cached artifact) never imports torch or litert-torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import UserError

KNOWN_VARIANTS: tuple[str, ...] = ("fp32",)
METADATA_FILENAME = "artifact.json"
CACHE_DIR_ENV = "BENCH_CACHE_DIR"
DEFAULT_SEED = 0
# Bump when the layout of artifact.json or the recipe changes meaning.
RECIPE_FORMAT = 1
# Libraries whose version changes the trained weights, the .tflite bytes or the measured top-1.
_RECIPE_LIBRARIES = ("torch", "litert-torch", "ai-edge-litert", "numpy", "scikit-learn")
_CONVERTER_MODULE = "harness.convert"
_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Artifact:
    name: str  # e.g. "digits_cnn-fp32"
    model_name: str
    variant: str
    path: Path  # the .tflite file
    sha256: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # True when this call found the artifact in the cache instead of building it. Not persisted.
    cached: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_name": self.model_name,
            "variant": self.variant,
            "filename": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "metadata": self.metadata,
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "bench" / "artifacts"


def artifact_name(model_name: str, variant: str) -> str:
    return f"{model_name}-{variant}"


def recipe_for(model_name: str, variant: str = "fp32", seed: int = DEFAULT_SEED, epochs: int | None = None) -> dict[str, Any]:
    """Everything that decides the artifact; its sha256 is the cache key. Cheap: no torch."""
    from models.registry import get_model_spec

    spec = get_model_spec(model_name)
    _check_variant(variant)
    return {
        "format": RECIPE_FORMAT,
        "model_name": model_name,
        "variant": variant,
        "seed": seed,
        "epochs": spec.default_epochs if epochs is None else epochs,
        "source_sha256": {
            module: _module_source_sha256(module) for module in (spec.source_module, _CONVERTER_MODULE)
        },
        "versions": {library: importlib.metadata.version(library) for library in _RECIPE_LIBRARIES},
    }


def recipe_key(recipe: dict[str, Any]) -> str:
    canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_artifact(directory: Path) -> Artifact:
    """Read `directory/artifact.json` and the .tflite beside it."""
    directory = Path(directory)
    document = json.loads((directory / METADATA_FILENAME).read_text(encoding="utf-8"))
    return Artifact(
        name=document["name"],
        model_name=document["model_name"],
        variant=document["variant"],
        path=directory / document["filename"],
        sha256=document["sha256"],
        size_bytes=document["size_bytes"],
        metadata=document["metadata"],
        cached=True,
    )


def build_artifact(
    model_name: str,
    variant: str = "fp32",
    cache_dir: Path | None = None,
    *,
    seed: int = DEFAULT_SEED,
    epochs: int | None = None,
) -> Artifact:
    """Return the artifact for this recipe: from the cache when present, else train + convert it.

    Unknown model or variant -> UserError. Concurrent builders of one recipe are safe: each builds
    in its own temporary directory and renames it into place; the loser uses the winner's.
    """
    recipe = recipe_for(model_name, variant, seed, epochs)
    key = recipe_key(recipe)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final_dir = cache_dir / key[:16]

    cached = _load_if_intact(final_dir)
    if cached is not None:
        return cached

    cache_dir.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".building-{key[:16]}-", dir=cache_dir))
    try:
        _build_into(staging_dir, recipe, key)
        _move_into_place(staging_dir, final_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    artifact = load_artifact(final_dir)
    # This call built it (or lost a race to an identical build): report it as not from cache.
    return replace(artifact, cached=False)


def _build_into(directory: Path, recipe: dict[str, Any], key: str) -> None:
    """Train, convert, verify and describe one artifact inside `directory`."""
    from harness.convert import convert_to_tflite, tflite_outputs
    from models.registry import get_model_spec

    spec = get_model_spec(recipe["model_name"])
    name = artifact_name(recipe["model_name"], recipe["variant"])
    started = time.perf_counter()
    model, train_report = spec.builder(recipe["seed"], recipe["epochs"])
    data = spec.dataset()
    tflite_path = directory / f"{name}.tflite"
    # Parity on the whole test split: real inputs, and cheap for small models.
    conversion = convert_to_tflite(model, data.x_test, tflite_path, model_name=name)
    tflite_top1 = float((tflite_outputs(tflite_path, data.x_test).argmax(axis=1) == data.y_test).mean())
    build_seconds = time.perf_counter() - started

    metadata = {
        "recipe": recipe,
        "recipe_key": key,
        "parent": None,  # fp32 is built from source; derived variants name their parent artifact
        "parameters": {"seed": recipe["seed"], "epochs": recipe["epochs"]},
        "parameter_count": int(sum(p.numel() for p in model.parameters())),
        "test_top1": {"torch": train_report.test_top1, "tflite": tflite_top1},
        "test_samples": int(len(data.y_test)),
        "parity": conversion.__dict__,
        "input_shape": list(spec.input_shape),
        "train_seconds": train_report.seconds,
        "build_seconds": build_seconds,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    artifact = Artifact(
        name=name,
        model_name=recipe["model_name"],
        variant=recipe["variant"],
        path=tflite_path,
        sha256=sha256_file(tflite_path),
        size_bytes=tflite_path.stat().st_size,
        metadata=metadata,
    )
    # The JSON is written last: a directory with artifact.json is a finished artifact.
    (directory / METADATA_FILENAME).write_text(
        json.dumps(artifact.to_json_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _move_into_place(staging_dir: Path, final_dir: Path) -> None:
    """Atomic directory rename; if another process got there first with an intact artifact, keep it."""
    if final_dir.exists() and _load_if_intact(final_dir) is None:
        # A damaged leftover (e.g. a file edited or truncated by hand): move it aside, then drop it.
        trash = final_dir.with_name(f".damaged-{final_dir.name}-{os.getpid()}")
        os.rename(final_dir, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(staging_dir, final_dir)
    except OSError:
        if _load_if_intact(final_dir) is None:
            raise


def _load_if_intact(directory: Path) -> Artifact | None:
    """The cached artifact if its JSON reads and its .tflite still has the recorded sha256."""
    try:
        artifact = load_artifact(directory)
    except (OSError, ValueError, KeyError):
        return None
    if not artifact.path.is_file() or artifact.path.stat().st_size != artifact.size_bytes:
        return None
    if sha256_file(artifact.path) != artifact.sha256:
        return None
    return artifact


def _module_source_sha256(module_name: str) -> str:
    # Read the file rather than import it: importing models.* would load torch.
    module_spec = importlib.util.find_spec(module_name)
    if module_spec is None or module_spec.origin is None:
        raise RuntimeError(f"cannot find the source of {module_name}")
    return hashlib.sha256(Path(module_spec.origin).read_bytes()).hexdigest()


def _check_variant(variant: str) -> None:
    if variant not in KNOWN_VARIANTS:
        raise UserError(f"unknown variant {variant!r}; known variants: {', '.join(KNOWN_VARIANTS)}")
