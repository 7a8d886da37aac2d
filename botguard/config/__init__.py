"""Typed configuration loaded from YAML with located errors."""

from botguard.config.loader import config_hash, default_config_path, dump_config, load_config
from botguard.config.models import Config

__all__ = ["Config", "config_hash", "default_config_path", "dump_config", "load_config"]
