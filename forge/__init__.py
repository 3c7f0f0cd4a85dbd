"""forge: Python edge workloads as tiny, fully static native artifacts."""

__version__ = "0.1.0"
