"""The package version: one place, read by pyproject.toml (setuptools dynamic), the CLI and run files."""

__version__ = "0.1.0"
