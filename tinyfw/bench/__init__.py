"""Inference benchmark helpers: parameter counts, size on disk, FLOPs, timed forwards."""
