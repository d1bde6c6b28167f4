"""The package version: one line, read by the build (``[tool.hatch.version]``) and the transport."""

__version__ = "0.1.0"
