"""benchmark_model for bench's virtual x86_64 Android device.

A re-implementation of TFLite/LiteRT's `benchmark_model` command-line tool over the LiteRT Python
interpreter: same flags, same algorithm, same output lines. Every number it prints is measured on
the host CPU while the tool runs. It knows nothing of ADB; the virtual device just executes it.
"""
