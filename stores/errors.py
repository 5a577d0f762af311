"""The two exceptions every part of latentgen raises for bad input (a leaf module)."""


class StoreError(Exception):
    """A store cannot be created, opened or written as asked (the message says why)."""


class ConfigError(ValueError):
    """A pipeline file or a run override is wrong; the message says where and why."""
