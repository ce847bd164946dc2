"""The errors a user's bad input raises in the model layer, torch-free, so that the command line and the pages can
catch them without importing torch (each is also importable from the module that raises it)."""

from __future__ import annotations


class UnknownModelError(ValueError):
    """Raised for a model name that is not in the registry."""


class DeviceError(ValueError):
    """Raised for a device or precision that this machine cannot provide."""


class WeightsError(RuntimeError):
    """A weights file that cannot be used (refused pickle, wrong shapes, unreadable)."""
