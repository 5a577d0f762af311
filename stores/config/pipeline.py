"""Pipelines: a base config and a sweep, parsed and checked whole (every run of the
sweep) when the pipelines file is read, and the run that `--run` names."""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .analysis import ClusterConfig
from .build import INTERNAL_KEYS, as_floats, build_block, copy_mappings
from .run import SWEEP_ALIASES, RunConfig, check_run
from .validators import check_file_name
from .yamlio import read_pipelines_file, yaml_load

PIPELINE_KEYS = {"description", "sweep", "cluster", "seed", "data", "corruption", "model", "train",
                 "capture", "analysis", "init"}


@dataclass(frozen=True)
class Pipeline:
    """A pipeline of the pipelines file: its runs are the grid of its sweep.

    Attributes
    ----------
    name, description : str
        The pipeline's name (a folder under the runs root) and its description.
    base : dict
        The keys of the run config, as the file gives them (swept keys included).
    sweep : tuple of (str, tuple)
        Sweep name (SWEEP_ALIASES or a dotted key) -> its values, in the file's order.
    cluster : ClusterConfig
        Where `analyze` runs its tasks.
    """

    name: str
    description: str
    base: dict
    sweep: tuple[tuple[str, tuple], ...]
    cluster: ClusterConfig = ClusterConfig()

    def runs(self) -> list[RunConfig]:
        """Every run of the sweep, the last sweep name varying fastest."""
        names = [n for n, _ in self.sweep]
        grid = itertools.product(*(values for _, values in self.sweep))
        return [self.run(dict(zip(names, point))) for point in grid]

    def run(self, params: dict) -> RunConfig:
        """The run with these swept values (names must be sweep names; one left out takes
        its first value)."""
        known = [n for n, _ in self.sweep]
        for key in params:
            if key not in known:
                raise ConfigError(f"--run: unknown key {key!r}: expected one of {', '.join(known)}")
        raw = copy_mappings(self.base)
        paths = {key: SWEEP_ALIASES.get(key, key).split(".") for key in known}
        for key in known:
            _set_path(raw, paths[key], params.get(key, dict(self.sweep)[key][0]))
        config = build_block(RunConfig, {**raw, "pipeline": self.name}, self.name)
        # Name the run by the parsed values, so `0` and `0.0` give one name.
        resolved = tuple((key, _get_path(config, paths[key])) for key in known)
        config = dataclasses.replace(config, params=resolved)
        check_file_name(config.name, f"{self.name}: run name")
        check_run(config, self.name)
        return config

    def select(self, text: str) -> RunConfig:
        """The swept run that `--run TEXT` names.

        TEXT is KEY=VALUE pairs, spelled as in the run's name (`corruption=0.6,seed=0`;
        a value may hold commas, lists or null, as names do) or as YAML values that equal
        a swept one (`corruption=0.60`); a key left out takes its first swept value. A
        value outside the sweep is refused with the swept ones: such a run is nobody's,
        and the pipeline's analysis would never see it.
        """
        known = [n for n, _ in self.sweep]
        runs = self.runs()
        if not known:
            if text.strip() in ("", runs[0].name):
                return runs[0]
            raise ConfigError(f"--run: {self.name} sweeps nothing (its one run is "
                              f"{runs[0].name!r}): leave out --run, got {text!r}")
        wanted = _split_run(text, known)
        first = dict(runs[0].params)
        for run in runs:
            values = dict(run.params)
            if all(_same(wanted[k], values[k]) if k in wanted else values[k] == first[k]
                   for k in known):
                return run
        for key in known:  # the first given value that no run has
            allowed = list(dict.fromkeys(str(dict(r.params)[key]) for r in runs))
            if key in wanted and not any(_same(wanted[key], dict(r.params)[key]) for r in runs):
                raise ConfigError(f"--run: {key}={wanted[key]} is not in the sweep of {self.name}: "
                                  f"expected one of {', '.join(allowed)}")
        raise ConfigError(f"--run: {text!r} names no run of {self.name}: expected one of "
                          f"{', '.join(r.name for r in runs)}")


def _get_path(obj: Any, path: list[str]) -> Any:
    for key in path:
        obj = getattr(obj, key)
    return obj


def _set_path(raw: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        raw = raw.setdefault(key, {})
    raw[path[-1]] = value


def _split_run(text: str, known: list[str]) -> dict[str, str]:
    """`a=1,b=x,y` -> {"a": "1", "b": "x,y"}: split before each `KEY=`, so a value (a
    run name's list `(16, 8)`, a string with a comma) keeps its commas."""
    out = {}
    for item in filter(None, (s.strip() for s in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"--run: expected KEY=VALUE[,KEY=VALUE...], got {item!r}")
        if key not in known:
            raise ConfigError(f"--run: unknown key {key!r}: expected one of {', '.join(known)}")
        out[key] = value.rstrip(",").strip()
    return out


def _same(text: str, value: Any) -> bool:
    """Does `--run`'s text name this swept value: its spelling in run names, or a YAML
    value equal to it (`0` and `0.0`, `[16, 8]` and `(16, 8)`, `null` and `None`)?"""
    if text == str(value):
        return True
    try:
        parsed = yaml_load(text)
    except yaml.YAMLError:
        return False
    if isinstance(parsed, bool) or isinstance(value, bool):  # `true` is not 1
        return parsed is value
    as_tuple = lambda v: tuple(map(as_tuple, v)) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return as_tuple(parsed) == as_tuple(value)


def _parse_sweep(name: str, raw: Any) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if raw == {}:
        raise ConfigError(f"{name}.sweep: expected at least one name -> list of values "
                          "(leave `sweep` out for a single run), got {}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}.sweep: expected a mapping of name -> list of values, got {raw!r}")
    sweep = []
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{name}.sweep.{key}: expected a non-empty list, got {values!r}")
        if len({repr(as_floats("float", v)) for v in values}) != len(values):
            raise ConfigError(f"{name}.sweep.{key}: expected distinct values, got {values!r}")
        _check_path(SWEEP_ALIASES.get(key, key).split("."), f"{name}.sweep.{key}")
        sweep.append((key, tuple(values)))
    return tuple(sweep)


def _check_path(path: list[str], where: str) -> None:
    cls: Any = RunConfig
    for i, part in enumerate(path):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in INTERNAL_KEYS}
        if part not in fields:
            raise ConfigError(f"{where}: unknown key {'.'.join(path[: i + 1])!r}: "
                              f"expected one of {', '.join(fields)}")
        default = fields[part].default
        cls = type(default) if dataclasses.is_dataclass(default) else None
        if cls is None and i < len(path) - 1:
            raise ConfigError(f"{where}: {'.'.join(path[: i + 1])!r} has no sub-keys")
    if cls is not None:
        raise ConfigError(f"{where}: {'.'.join(path)!r} is a block; sweep one of its keys")


def parse_pipeline(name: str, raw: Any) -> Pipeline:
    """A pipeline from its mapping in the pipelines file, every run of its sweep checked.

    Parameters
    ----------
    name : str
        The pipeline's name (a plain file name).
    raw : dict
        Its keys (PIPELINE_KEYS).

    Returns
    -------
    Pipeline

    Raises
    ------
    ConfigError
        For the first problem found, naming its key.
    """
    check_file_name(name, "pipeline name")
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {raw!r}")
    unknown = set(raw) - PIPELINE_KEYS
    if unknown:
        raise ConfigError(f"{name}: unknown key {sorted(unknown)[0]!r}: expected one of "
                          f"{', '.join(sorted(PIPELINE_KEYS))}")
    base = {k: copy_mappings(v) for k, v in raw.items() if k not in ("description", "sweep", "cluster")}
    build_block(RunConfig, {**base, "pipeline": name}, name)  # base values too, even where swept
    cluster = build_block(ClusterConfig, raw.get("cluster") or {}, f"{name}.cluster")
    pipeline = Pipeline(name, str(raw.get("description", "")), base, _parse_sweep(name, raw.get("sweep")),
                        cluster)
    pipeline.runs()  # validate every run of the sweep now, not halfway through a job
    return pipeline


def load_pipelines(path: str | Path) -> dict[str, Pipeline]:
    """Every pipeline of a pipelines file, by name.

    Parameters
    ----------
    path : str or Path
        The pipelines file (YAML: a mapping of pipeline names).

    Returns
    -------
    dict of str to Pipeline
        In the file's order.
    """
    path = Path(path)
    raw = read_pipelines_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of pipeline names, got {type(raw).__name__}")
    return {name: parse_pipeline(name, body) for name, body in raw.items()}


def load_pipeline(name: str, path: str | Path = "pipelines.yaml") -> Pipeline:
    """The pipeline `name` of the pipelines file `path` (see `load_pipelines`)."""
    pipelines = load_pipelines(path)
    if name not in pipelines:
        raise ConfigError(f"pipeline: expected one of {', '.join(pipelines)}, got {name!r}")
    return pipelines[name]
