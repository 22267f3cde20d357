"""Model inputs other than one float image: an input spec per input, and batches of several inputs.

Written `--input NAME:DTYPE:SHAPE[:LOW,HIGH]`, once per input, in the order the model takes them:
`--input input_ids:int64:1,128 --input attention_mask:int64:1,128`. LOW,HIGH is the inclusive
range of an integer input's values (token ids: 0,VOCAB-1); bench passes it to benchmark_model as
`--input_layer_value_range` and draws generated samples from it. A factory module can declare the
same as `INPUTS = ["input_ids:int64:1,128", ...]`.

A batch of N samples of several inputs is an `InputBatch` (name -> array, N first); a model with
one float input keeps plain (N, ...) float32 arrays. `torch_inputs` and `feed_arrays` turn either
into what torch or LiteRT take, so callers need not ask which they hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import ModelInputError

if TYPE_CHECKING:
    import torch

INPUT_DTYPES = ("float32", "int64", "int32")
_SPEC_FORM = "NAME:DTYPE:SHAPE[:LOW,HIGH], e.g. input_ids:int64:1,128:0,30521"


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, numpy dtype name, batch-1 shape and (integers) value range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    value_range: tuple[int, int] | None = None  # inclusive; integer inputs only

    @property
    def is_integer(self) -> bool:
        return np.dtype(self.dtype).kind in "iu"

    @property
    def is_mask(self) -> bool:
        """An attention/padding mask: generated as a prefix of ones (the tokens) then zeros."""
        return self.is_integer and "mask" in self.name.lower()

    def text(self) -> str:
        """The --input spelling of this spec."""
        text = f"{self.name}:{self.dtype}:{','.join(map(str, self.shape))}"
        return text + (f":{self.value_range[0]},{self.value_range[1]}" if self.value_range else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "value_range": list(self.value_range) if self.value_range else None}

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        value_range = data.get("value_range")
        return cls(data["name"], data["dtype"], tuple(int(s) for s in data["shape"]),
                   tuple(int(v) for v in value_range) if value_range else None)


def parse_input(text: str) -> InputSpec:
    """`--input` text -> InputSpec; ModelInputError naming the text and the form to write."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4) or not parts[0].strip():
        raise ModelInputError(f"--input {text!r}: write {_SPEC_FORM}")
    name, dtype, shape_text = (part.strip() for part in parts[:3])
    if dtype not in INPUT_DTYPES:
        raise ModelInputError(f"--input {text!r}: dtype {dtype!r} is not one of {', '.join(INPUT_DTYPES)}")
    try:
        shape = tuple(int(size) for size in shape_text.replace("x", ",").split(","))
    except ValueError:
        raise ModelInputError(f"--input {text!r}: shape {shape_text!r} is not comma-separated sizes, "
                              "e.g. 1,128") from None
    if not shape or any(size <= 0 for size in shape) or shape[0] != 1:
        raise ModelInputError(f"--input {text!r}: shape {shape_text} must be batch 1 with positive sizes, e.g. 1,128")
    value_range = None
    if len(parts) == 4:
        try:
            low, high = (int(v) for v in parts[3].split(","))
        except ValueError:
            raise ModelInputError(f"--input {text!r}: value range {parts[3]!r} is not LOW,HIGH integers, "
                                  "e.g. 0,30521") from None
        if high < low:
            raise ModelInputError(f"--input {text!r}: value range {low},{high} has HIGH below LOW")
        if np.dtype(dtype).kind not in "iu":
            raise ModelInputError(f"--input {text!r}: a value range is for integer inputs, not {dtype}")
        value_range = (low, high)
    return InputSpec(name, dtype, shape, value_range)


def parse_inputs(texts) -> tuple[InputSpec, ...]:
    """Several --input texts; names must differ."""
    specs = tuple(parse_input(text) for text in texts or ())
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise ModelInputError(f"--input {name} is given {names.count(name)} times; give each input once")
    return specs


class InputBatch:
    """N samples of several named inputs (name -> array with N first), indexed like an array."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        lengths = {len(array) for array in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"inputs of different sample counts: {sorted(lengths)}")
        self.arrays = {name: np.ascontiguousarray(array) for name, array in arrays.items()}

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, index) -> "InputBatch":
        return InputBatch({name: array[index] for name, array in self.arrays.items()})

    def __iter__(self):
        return (self[i:i + 1] for i in range(len(self)))


def torch_inputs(x) -> tuple["torch.Tensor", ...]:
    """A batch as the positional arguments of the model's forward."""
    import torch

    if isinstance(x, InputBatch):
        return tuple(torch.from_numpy(array) for array in x.arrays.values())
    return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),)


def feed_arrays(x) -> list[np.ndarray]:
    """A batch as one array per model input, in the model's input order."""
    if isinstance(x, InputBatch):
        return list(x.arrays.values())
    return [np.ascontiguousarray(x, dtype=np.float32)]


def batch_digest_parts(x) -> list[np.ndarray | None]:
    """The arrays a dataset fingerprint hashes."""
    return [None] if x is None else feed_arrays(x)


def generated_inputs(specs: tuple[InputSpec, ...], count: int, seed: int) -> InputBatch:
    """`count` token-like samples: integer inputs uniform over their value range, masks a random
    length prefix of ones (the rest padding, whose ids are 0), float inputs standard normal."""
    rng = np.random.default_rng(seed)
    lengths = None
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (count, *spec.shape[1:])
        if spec.is_mask:
            width = spec.shape[-1]
            lengths = rng.integers(max(1, width // 4), width + 1, size=count) if lengths is None else lengths
            mask = (np.arange(width)[None, :] < lengths[:, None])
            arrays[spec.name] = np.broadcast_to(mask.reshape((count,) + (1,) * (len(shape) - 2) + (width,)),
                                                shape).astype(spec.dtype)
        elif spec.is_integer:
            if spec.value_range is None:
                raise ModelInputError(f"input {spec.name} has no value range to draw samples from; "
                                      f"write it as {spec.name}:{spec.dtype}:{','.join(map(str, spec.shape))}:LOW,HIGH")
            low, high = spec.value_range
            arrays[spec.name] = rng.integers(low, high + 1, size=shape).astype(spec.dtype)
        else:
            arrays[spec.name] = rng.standard_normal(shape).astype(np.float32)
    masks = [spec for spec in specs if spec.is_mask]
    if masks and lengths is not None:
        # Tokens past each sequence's length are padding: id 0, as tokenizers pad.
        width = masks[0].shape[-1]
        for spec in specs:
            if spec.is_integer and not spec.is_mask and spec.shape[-1] == width:
                arrays[spec.name] = np.where(np.arange(width) < lengths[:, None], arrays[spec.name], 0).astype(spec.dtype)
    return InputBatch(arrays)


def example_inputs(specs: tuple[InputSpec, ...], seed: int = 0) -> tuple["torch.Tensor", ...]:
    """One sample as torch tensors: what tracing, pruning and counting run on."""
    return torch_inputs(generated_inputs(specs, 1, seed))
