"""GPU and NNAPI on the virtual x86_64 device, which has neither a GPU driver nor NNAPI.

GPU: the real Android binary always creates the GPU delegate (`Created TensorFlow Lite delegate
for GPU.` + `GPU delegate created.`); the failure comes when ModifyGraphWithDelegate initializes
the backends: no libOpenCL.so, then (unless --gpu_backend=cl) no usable EGL for OpenGL. The
delegate kernel fails to prepare, the runtime restores the graph, and the tool prints `Failed to
apply GPU delegate.` then `Benchmarking failed.` (exit 1). Wording from the runtime's messages as
reported on phones without OpenCL (tensorflow/tensorflow#60720, #41839, shaqian/flutter_tflite#133).

NNAPI: loading the library prints `nnapi error: unable to open library libneuralnetworks.so`
(sample 04). CHOICE: the real tool would then WARN `NNAPI acceleration is unsupported on this
platform.` and carry on without the delegate, reporting CPU timings as if nothing happened. This
device prints that warning too, but then fails like a delegate that cannot be applied
(`Failed to apply NNAPI delegate.`, exit 1), so that CPU latencies are never recorded under an
NNAPI label by the harness.
"""
from dataclasses import dataclass

NNAPI_LIBRARY_ERROR = "nnapi error: unable to open library libneuralnetworks.so"


@dataclass(frozen=True)
class DelegateFailure:
    # In output order: ("tool-info" | "tool-warn" | a runtime severity such as "INFO"/"ERROR", text).
    lines: list[tuple[str, str]]
    tool_error: str


def gpu_failure(gpu_backend: str, first_delegate_node_index: int) -> DelegateFailure:
    lines = [("INFO", "Created TensorFlow Lite delegate for GPU."), ("tool-info", "GPU delegate created.")]
    if gpu_backend != "gl":
        lines.append(("ERROR", 'Can not open OpenCL library on this device - dlopen failed: '
                               'library "libOpenCL.so" not found'))
    if gpu_backend == "":
        lines.append(("ERROR", "Falling back to OpenGL"))
    if gpu_backend != "cl":
        lines.append(("ERROR", "TfLiteGpuDelegate Init: No EGL error, but eglChooseConfig failed."))
    lines += [
        ("INFO", "Created 0 GPU delegate kernels."),
        ("ERROR", "TfLiteGpuDelegate Prepare: delegate is not initialized"),
        ("ERROR", f"Node number {first_delegate_node_index} (TfLiteGpuDelegateV2) failed to prepare."),
        ("ERROR", "Restored original execution plan after delegate application failure."),
    ]
    return DelegateFailure(lines, "Failed to apply GPU delegate.")


def nnapi_failure() -> DelegateFailure:
    return DelegateFailure([("tool-warn", "NNAPI acceleration is unsupported on this platform.")],
                           "Failed to apply NNAPI delegate.")
