"""The package version, importable without importing torch or anything else."""

__version__ = "0.1.0"

__all__ = ["__version__"]
