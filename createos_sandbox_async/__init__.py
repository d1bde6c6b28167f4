"""Async Python SDK for CreateOS Sandbox."""

__version__ = "0.1.0"
