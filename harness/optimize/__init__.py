"""Optimization stages that change a PyTorch model before conversion: pruning, fine-tuning,
analysis (and quantization, which lives beside them). Each module has one job; the variant
pipeline chains them."""
