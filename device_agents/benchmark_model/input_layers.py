"""`--input_layer`, `--input_layer_shape`, `--input_layer_value_range`,
`--input_layer_value_files` and `--output_filepath`, as BenchmarkTfLiteModel has them
(LiteRT `tflite/tools/benchmark/benchmark_tflite_model.cc` @ f674577: PopulateInputLayerInfo,
SplitInputLayerNameAndValueFile, FindLayerInfoIndex, LoadInputTensorData, OutputSaver; its
tests in benchmark_test.cc give the `::` cases).

- The flags are parsed in ValidateParams, before the parameter echo and before any model is
  read. The layers are matched to the model's inputs by position; a name only warns.
- An input file is read once, after Init, and feeds every invocation. A file that cannot be
  opened or whose size is not the tensor's is TFLITE_LOG(FATAL): `FATAL: ...` and abort (exit
  134), no `Benchmarking failed.`.
- The outputs of the last timed invocation are written after the run (OnBenchmarkEnd of the
  last listener): every output tensor's raw bytes, in the interpreter's output order, no
  header; a file that cannot be opened is skipped without a word.
No numpy or LiteRT here: parsing happens before the heavy imports.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from device_agents.benchmark_model import log


class InvalidInputLayers(Exception):
    """An error status from PopulateInputLayerInfo; its lines are printed."""


@dataclass
class InputLayer:
    name: str
    shape: list[int]
    low: int | None = None        # --input_layer_value_range
    high: int | None = None
    value_file: str = ""          # --input_layer_value_files (a device path)


def _split(text: str, delimiter: str) -> list[str]:
    """The tool's Split(): nothing for an empty string, else absl::StrSplit (empty items kept)."""
    return text.split(delimiter) if text else []


def _parse_shape(text: str) -> list[int]:
    """util::SplitAndParse<int>: an empty shape is a scalar; a bad number is fatal."""
    if text == "":
        return []
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        log.fatal(f"Incorrect size string specified: {text}")
        raise AssertionError("unreachable")


def split_name_and_file(item: str) -> tuple[str, str] | None:
    """SplitInputLayerNameAndValueFile: NAME:FILE, where `::` in either stands for `:`.

    The scan stops before the last character; a second lone `:` or none at all is an error."""
    delimiter = -1
    i = 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 2
                continue
            if delimiter >= 0:
                log.error(f"{item} contains more than one delimiter.")
                return None
            delimiter = i
        i += 1
    if delimiter < 0:
        log.error(f"{item} doesn't contain any delimiter.")
        return None
    return item[:delimiter].replace("::", ":"), item[delimiter + 1:].replace("::", ":")


def _find(layers: list[InputLayer], name: str, names_text: str) -> InputLayer:
    for layer in layers:
        if layer.name == name:
            return layer
    log.fatal(f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
              f"{names_text}")
    raise AssertionError("unreachable")


def populate_input_layers(names_text: str, shapes_text: str, ranges_text: str,
                          files_text: str) -> list[InputLayer]:
    """PopulateInputLayerInfo. Raises InvalidInputLayers for an error status (fatal cases abort)."""
    names = _split(names_text, ",")
    shapes = _split(shapes_text, ":")
    if len(names) != len(shapes):
        log.error(f"The number of items in --input_layer_shape ({shapes_text}, with {len(shapes)} "
                  f"items) must match the number of items in --input_layer ({names_text}, with "
                  f"{len(names)} items). For example --input_layer=input1,input2 "
                  "--input_layer_shape=1,224,224,4:1,20")
        raise InvalidInputLayers()
    layers = []
    for name, shape in zip(names, shapes):
        dims = _parse_shape(shape)
        if any(d == -1 for d in dims):
            log.error("Any unknown sizes in the shapes (-1's) must be replaced with the size you "
                      "want to benchmark with.")
            raise InvalidInputLayers()
        layers.append(InputLayer(name, dims))
    for item in _split(ranges_text, ":"):
        parts = item.split(",")
        if len(parts) != 3:
            log.error(f"Wrong input value range item specified: {item}")
            raise InvalidInputLayers()
        try:
            low, high = int(parts[1]), int(parts[2])
        except ValueError:
            low = high = None
        if low is None or low > high:
            log.error(f"Wrong low and high value of the input value range specified: {item}")
            raise InvalidInputLayers()
        layer = _find(layers, parts[0], names_text)
        layer.low, layer.high = low, high
    for item in _split(files_text, ","):
        pair = split_name_and_file(item)
        if pair is None:
            log.error(f"Wrong input value file item specified: {item}")
            log.error("1")  # the tool streams the TfLiteStatus it got
            raise InvalidInputLayers()
        layer = _find(layers, pair[0], names_text)
        if layer.low is not None:
            log.warn(f"The input_name:{layer.name} appears both in input_layer_value_files and "
                     "input_layer_value_range. The input_layer_value_range of the input_name "
                     "will be ignored.")
        layer.value_file = pair[1]
    return layers


def read_value_file(shown_path: str, host_file: str | None, expected_bytes: int) -> bytes:
    """LoadInputTensorData of a non-string tensor: exactly the tensor's bytes, or fatal."""
    try:
        value_file = open(host_file or "", "rb")
    except OSError:
        log.fatal(f"Failed to read the input_layer_value_file:{shown_path}")
        raise AssertionError("unreachable")
    with value_file:
        size = os.fstat(value_file.fileno()).st_size
        if size != expected_bytes:
            log.fatal(f"The size of {shown_path} is {size} bytes. It should be {expected_bytes} "
                      "bytes.")
        return value_file.read()


def save_outputs(host_file: str | None, tensors_bytes: list[bytes]) -> None:
    """OutputSaver::OnBenchmarkEnd: the raw outputs, concatenated; silent when it cannot open."""
    if not host_file:
        return
    try:
        with open(host_file, "wb") as out:
            for data in tensors_bytes:
                out.write(data)
    except OSError:
        pass
