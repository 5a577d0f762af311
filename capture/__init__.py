"""Train a run and capture its epochs into a run store.

`capture_run(config, root)` trains one run of a pipeline and writes its store;
`estimate_run(config)` says what the run will store and compute before it starts. The
submodules load on first use, so `import capture` stays light (no torch until needed).
"""

from __future__ import annotations

import importlib

__all__ = ["Dataset", "RunEstimate", "build_model", "capture_run", "estimate_run", "load_dataset",
           "load_weights"]

_HOMES = {"Dataset": "dataset", "RunEstimate": "estimate", "build_model": "models",
          "capture_run": "run", "estimate_run": "estimate", "load_dataset": "data",
          "load_weights": "models"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
