"""Train a run and capture its epochs into a run store.

`capture_run(config, root)` trains one run of a pipeline and writes its store;
`estimate_run(config)` says what the run will store and compute before it starts;
`Recorder` records any model trained in the user's own loop (on a `ProbeSet`) into a
store the same way. The
submodules load on first use, so `import capture` stays light (no torch until needed).
"""

from __future__ import annotations

import importlib

__all__ = ["Dataset", "ProbeSet", "Recorder", "RunEstimate", "build_model", "capture_run",
           "estimate_run", "load_dataset", "load_weights"]

# submodule -> the public names it defines
_EXPORTS = {"data": ("load_dataset",), "dataset": ("Dataset",),
            "estimate": ("RunEstimate", "estimate_run"), "models": ("build_model", "load_weights"),
            "probeset": ("ProbeSet",), "recorder": ("Recorder",), "run": ("capture_run",)}
_SUBMODULE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """Import a public name's submodule on first use, then keep the name here."""
    home = _SUBMODULE.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
