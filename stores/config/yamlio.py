"""YAML in one place: the one parser of pipelines files and `--run` values
(`yaml.safe_load` with YAML 1.2 floats and duplicate keys refused)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does.

    PyYAML implements YAML 1.1, whose floats need a dot and a signed exponent: `1e-3`,
    `2e-4` and `1E5` come back as strings. YAML 1.2's core schema reads them as floats;
    the resolver added here takes every spelling with an exponent (the forms with a dot
    and the `.inf`/`.nan` words are YAML 1.1 floats already). Integers stay integers.
    """


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice (PyYAML would silently keep the last).

    Attributes
    ----------
    key
        The key.
    first, second : int
        The lines (from 1) that name it.
    """

    def __init__(self, key: Any, first: int, second: int):
        super().__init__(f"duplicate key {key!r} at lines {first} and {second}")
        self.key, self.first, self.second = key, first, second


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: keys merged in may be overridden
            continue
        key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
        try:
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line)
            seen[key] = line
        except TypeError:  # an unhashable key: the base constructor says so
            continue
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_Loader.construct_mapping = _construct_mapping  # type: ignore[method-assign]

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def yaml_load(text: str) -> Any:
    """`yaml.safe_load` with YAML 1.2 floats: the one parser of pipelines and `--run`.

    Parameters
    ----------
    text : str
        YAML.

    Returns
    -------
    object
        Mappings, lists, numbers, strings, booleans and nulls.

    Raises
    ------
    DuplicateKeyError
        For a key named twice in one mapping.
    yaml.YAMLError
        For anything else that is not YAML.
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_pipelines_file(path: Path) -> Any:
    """The parsed YAML of a pipelines file, every failure a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"pipelines file not found: {path}")
    try:
        return yaml_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the pipelines file ({err.__class__.__name__}: "
                          f"{getattr(err, 'strerror', None) or err}); expected a readable UTF-8 YAML file")
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: duplicate key {err.key!r} at lines {err.first} and {err.second} "
                          "(YAML would silently keep the second): expected each key once; remove "
                          "or rename one")
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem} (expected plain YAML: "
                          "mappings, lists, numbers and strings, no tags)")


def parse_run_overrides(text: str) -> dict:
    """`corruption=0.6,seed=0` -> {"corruption": 0.6, "seed": 0} (values as YAML scalars).

    Parameters
    ----------
    text : str
        KEY=VALUE pairs separated by commas.

    Returns
    -------
    dict
        Key -> parsed value.
    """
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--run: expected KEY=VALUE[,KEY=VALUE...], got {item!r}")
        try:
            out[key.strip()] = yaml_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--run: {key.strip()}: expected a number or a name, got {value!r}")
    return out
