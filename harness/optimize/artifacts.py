"""Built .tflite artifacts and their content-addressed cache.

The cache key is a sha256 over everything that decides the artifact's bytes (the recipe, made by
`harness.optimize.pipeline.variant_recipe`): the model's and data's fingerprints, the variant's
knobs, the seed, the source text of the code that builds it and the library versions.
Same recipe -> same directory -> no rebuild.

Importing this module (and loading a cached artifact) never imports torch or litert-torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# One file hash for model fingerprints and artifacts; importing it loads no torch.
from models.hashing import module_source_sha256, sha256_file  # noqa: F401 (used by harness.*)

METADATA_FILENAME = "artifact.json"


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


def write_artifact(directory: Path, *, name: str, model_name: str, variant: str,
                   tflite_path: Path, metadata: dict[str, Any]) -> Artifact:
    """Describe a finished .tflite in `directory/artifact.json` (written last: its presence
    marks a finished artifact)."""
    artifact = Artifact(name=name, model_name=model_name, variant=variant, path=tflite_path,
                        sha256=sha256_file(tflite_path), size_bytes=tflite_path.stat().st_size,
                        metadata={**metadata,
                                  "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    (directory / METADATA_FILENAME).write_text(
        json.dumps(artifact.to_json_dict(), indent=2, sort_keys=True, default=str) + "\n",
        encoding="utf-8")
    return artifact


def get_or_build(recipe: dict[str, Any], cache_dir: Path, build_into) -> Artifact:
    """The artifact of `recipe` from the cache, or built by `build_into(directory, key)`.

    `build_into` writes the .tflite and calls `write_artifact` inside a private staging folder;
    the folder is renamed into place only when complete, so readers never see half an artifact.
    """
    key = recipe_key(recipe)
    cache_dir = Path(cache_dir)
    final_dir = cache_dir / key[:16]
    cached = _load_if_intact(final_dir)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".building-{key[:16]}-", dir=cache_dir))
    try:
        build_into(staging_dir, key)
        _move_into_place(staging_dir, final_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return replace(load_artifact(final_dir), cached=False)


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
