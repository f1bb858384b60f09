"""Configuration: the schema (`schema.py`), loading it from a YAML file and the
environment (`loading.py`), and the errors an operator reads (`problems.py`). The rest of
the package imports from here."""

from hazardwatch.settings.loading import (
    DEFAULT_CONFIG_FILE,
    check_env_names,
    load_settings,
    read_yaml,
)
from hazardwatch.settings.problems import format_validation_error, models_in
from hazardwatch.settings.schema import (
    ApiSettings,
    BrokerSettings,
    CameraSettings,
    Location,
    MotionSettings,
    Settings,
    WeatherSettings,
    is_loopback,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ApiSettings",
    "BrokerSettings",
    "CameraSettings",
    "Location",
    "MotionSettings",
    "Settings",
    "WeatherSettings",
    "check_env_names",
    "format_validation_error",
    "is_loopback",
    "load_settings",
    "models_in",
    "read_yaml",
]
