"""Config blocks from mappings: every key and value checked by the field's check, so
each error names the key, the bad value and what is allowed."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError
from .capture import ScheduleConfig
from .run import RunConfig

INTERNAL_KEYS = ("pipeline", "params")  # RunConfig fields set by the parser, not by a file


def copy_mappings(d: Any) -> Any:
    """A copy of nested mappings (their other values shared)."""
    return {k: copy_mappings(v) for k, v in d.items()} if isinstance(d, dict) else d


def as_floats(annotation: str, value: Any) -> Any:
    """Whole numbers given for float fields (or float tuples) become floats."""
    whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if annotation.startswith("float") and whole(value):
        return float(value)
    if "tuple[float" in annotation and isinstance(value, (list, tuple)):
        return [float(v) if whole(v) else v for v in value]
    return value


def build_block(cls: type, raw: Any, where: str) -> Any:
    """Build config dataclass `cls` from mapping `raw`, validating every key and value.

    Parameters
    ----------
    cls : type
        A config block (DataConfig, ..., RunConfig).
    raw : dict
        Its keys; a key left out takes its default, a nested block is a nested mapping.
    where : str
        The block's place, for the messages ("quickstart.train").

    Returns
    -------
    cls
        The block.

    Raises
    ------
    ConfigError
        "WHERE.KEY: expected ..., got VALUE", or an unknown key with the known ones.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            allowed = ", ".join(n for n in fields if n not in INTERNAL_KEYS)
            raise ConfigError(f"{where}: unknown key {key!r}: expected one of {allowed}")
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        value, here = raw[name], f"{where}.{name}"
        if dataclasses.is_dataclass(f.default):
            kwargs[name] = build_block(type(f.default), _shorthand(type(f.default), value), here)
            continue
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{here}: {problem}, got {value!r}")
        value = as_floats(f.type, value)  # `lr: 1` and `lr: 1.0` are one config, one hash
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _shorthand(cls: type, value: Any) -> Any:
    """`schedule: [0, 5, 10]` is short for `schedule: {epochs: [0, 5, 10]}`."""
    if cls is ScheduleConfig and isinstance(value, list):
        return {"epochs": value}
    return value


def replace_checked(config: Any, where: str, **changes: Any) -> Any:
    """`dataclasses.replace`, with the new values checked like the file's.

    Parameters
    ----------
    config : dataclass
        A config block.
    where : str
        Where the changes come from, for the messages ("command line").
    **changes
        Field -> new value.

    Returns
    -------
    dataclass
        A new block of the same type.
    """
    return build_block(type(config), {**dataclasses.asdict(config), **changes}, where)


def run_config_from_dict(raw: dict) -> RunConfig:
    """The RunConfig a store recorded (its root attribute `config`).

    Parameters
    ----------
    raw : dict
        `RunConfig.to_dict()` as stored.

    Returns
    -------
    RunConfig
        Checked like a pipeline's run, `params` as recorded.
    """
    raw = copy_mappings(raw)
    params = tuple(raw.pop("params", {}).items())
    config = build_block(RunConfig, raw, str(raw.get("pipeline", "config")))
    return dataclasses.replace(config, params=params)
