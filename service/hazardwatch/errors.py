"""The error hierarchy: every message names the bad value and how to fix it."""

from __future__ import annotations


class HazardwatchError(Exception):
    """Base of every error hazardwatch raises on purpose."""


class ConfigError(HazardwatchError):
    """The configuration file or environment holds a value that cannot be used."""


class StorageError(HazardwatchError):
    """The database cannot be reached, migrated or written."""


class SourceError(HazardwatchError):
    """A camera source cannot be opened or read."""


class ModelLoadError(HazardwatchError):
    """The CLIP model or its weights cannot be loaded."""


class EmbedderUnavailableError(HazardwatchError):
    """No model can embed a search query now (loading, or no worker answers); retry later."""


class DetectorUnavailableError(HazardwatchError):
    """No detector holds the camera now (no events instance owns its partition, or none
    answered); retry later."""
