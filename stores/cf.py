"""CF-style attributes of every array of a run store: `long_name`, and `units` (or a
`description` where a unit says nothing), so that a plain xarray reader sees what each
array is (schema version 2)."""

from __future__ import annotations


def array_attrs(name: str) -> dict:
    """The CF-style attributes of the array at `name`.

    Parameters
    ----------
    name : str
        The array's path in the store (`activations/relu1/values`, `metrics/test_acc`,
        `state/0/...`, `analysis/dynamics/accuracy`).

    Returns
    -------
    dict
        `long_name` and `units` or `description`.
    """
    return {"long_name": name.replace("/", " ").replace("_", " "), "description": name}
