"""The checks of config values: each returns the problem ("expected ...") or None.

A config block attaches one check to each field (`checked`); the parser adds the
key and the bad value to the problem, so every error reads
"KEY: expected ..., got VALUE". The command lines check their options with the same
functions (`check_option`), so an option and its config key are worded alike.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from ..errors import ConfigError
from .vocab import DEVICES, REDUCTION_KINDS, REDUCTIONS, SIZED_REDUCTION_KINDS, TOKEN_REDUCTIONS

Check = Callable[[Any], "str | None"]

# A run's store lays out one slot per scheduled epoch: a schedule longer than this is
# refused (with its size) before anything is laid out. 10,000 slots is 20 times the
# longest published schedule here (`0:500:10` then every 50 up to 3000 epochs: 101).
MAX_SCHEDULED_EPOCHS = 10_000

# The devices as a message lists them (DEVICES is the regular expression they match).
DEVICE_WORDS = ("cpu", "cuda", "cuda:N")


def checked(check: Check) -> dict:
    """A dataclass field's metadata carrying its check.

    Parameters
    ----------
    check : callable
        Takes the value, returns the problem or None.

    Returns
    -------
    dict
        ``{"check": check}``, for ``field(metadata=...)``.
    """
    return {"check": check}


def one_of(words: tuple[str, ...] | list[str]) -> str:
    """`a, b or c`: the words as a message lists alternatives."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_option(flag: str, check: Check, value: Any) -> None:
    """Check a command-line option given (not None) with a config key's check.

    Parameters
    ----------
    flag : str
        The option ("--workers"), for the message.
    check : callable
        The check of the config key the option overrides (`workers()`, `device()`).
    value
        The option's value; None (not given) passes.

    Raises
    ------
    ConfigError
        "FLAG: expected ..., got VALUE".
    """
    problem = None if value is None else check(value)
    if problem:
        raise ConfigError(f"{flag}: {problem}, got {value!r}")


def choice(*allowed: Any) -> Check:
    """One of `allowed` (None among them allows null)."""
    def check(v):
        if v not in allowed:
            return f"expected one of {', '.join(map(str, allowed))}"

    return check


def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False,
           lo_open: bool = False, optional: bool = False) -> Check:
    """A number (or an integer) in [lo, hi] ((lo, hi] if `lo_open`); null if `optional`.
    Booleans and NaN are not numbers."""
    kind = "an integer" if integer else "a number"
    rng = ""
    if lo is not None or hi is not None:
        left = "(" if lo_open else "["
        rng = f" in {left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"

    def check(v):
        if optional and v is None:
            return None
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or v != v:  # v != v: NaN
            return f"expected {kind}{rng}{' or null' if optional else ''}"
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
            return f"expected {kind}{rng}"

    return check


def workers(*, optional: bool = False) -> Check:
    """A count of workers (>= 1); null if `optional` (`cluster.workers`, `--workers`)."""
    def check(v):
        if not (optional and v is None) and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            return f"expected {one_of(['an integer >= 1', *(['null'] if optional else [])])}"

    return check


def device(*, optional: bool = False) -> Check:
    """A torch device name matching DEVICES; null if `optional` (`analysis.device`, `--device`)."""
    def check(v):
        if not (optional and v is None) and not (isinstance(v, str) and re.fullmatch(DEVICES, v)):
            return f"expected {one_of([*DEVICE_WORDS, *(['null'] if optional else [])])}"

    return check


def int_list(lo: int = 0, *, increasing: bool = False, nonempty: bool = True) -> Check:
    """A list of integers >= lo (non-empty, strictly increasing if asked)."""
    def check(v):
        what = "a list of integers >= %d" % lo + (", strictly increasing" if increasing else "")
        if not isinstance(v, (list, tuple)) or (nonempty and not v):
            return f"expected {'a non-empty ' + what[2:] if nonempty else what}"
        if any(isinstance(x, bool) or not isinstance(x, int) or x < lo for x in v):
            return f"expected {what}"
        if increasing and any(b <= a for a, b in zip(v, v[1:])):
            return f"expected {what}"

    return check


def boolean(v: Any) -> str | None:
    """true or false (not 0 or 1)."""
    if not isinstance(v, bool):
        return "expected true or false"


def pair(lo: float, hi: float) -> Check:
    """Two numbers in [lo, hi)."""
    def check(v):
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not lo <= x < hi for x in v)):
            return f"expected two numbers in [{lo}, {hi})"

    return check


def optional_path(v: Any) -> str | None:
    """A non-empty string or null."""
    if v is not None and (not isinstance(v, str) or not v):
        return "expected a path or null"


# `package.module:function`: an import path, then the callable that builds the model.
FACTORY = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*"


def factory(v: Any) -> str | None:
    """An import path `package.module:function` (FACTORY) or null."""
    if v is not None and not (isinstance(v, str) and re.fullmatch(FACTORY, v)):
        return "expected 'package.module:function' (a module's import path, a colon, a name) or null"


def _plain(v: Any) -> bool:
    """A value YAML and JSON write alike: a string, number, boolean, null, list or mapping."""
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return v is None or isinstance(v, (str, int, float, bool))


def plain_mapping(v: Any) -> str | None:
    """A mapping of names to plain values (strings, numbers, booleans, lists, mappings), or null."""
    if v is not None and not (isinstance(v, dict) and _plain(v)):
        return "expected a mapping of argument names to plain values (strings, numbers, lists) or null"


def optional_name(v: Any) -> str | None:
    """A non-empty string (a module path) or null."""
    if v is not None and (not isinstance(v, str) or not v):
        return "expected a module path (a non-empty string) or null"


def strings(v: Any) -> str | None:
    """A list of strings (maybe empty)."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return "expected a list of strings"


def names(allowed: tuple[str, ...] | None = None) -> Check:
    """A non-empty list of names, each from `allowed` if given."""
    def check(v):
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v):
            return "expected a non-empty list of names"
        if allowed is not None and not set(v) <= set(allowed):
            bad = [x for x in v if x not in allowed]
            return f"unknown {bad[0]!r}: expected names from {', '.join(allowed)}"

    return check


def expand_epochs(items) -> list[int]:
    """Epoch list items are integers or inclusive ranges `start:stop:step` ("0:500:10").

    Parameters
    ----------
    items : iterable of int or str
        Epochs and ranges, as a schedule lists them.

    Returns
    -------
    list of int
        The epochs, ranges laid out in place.
    """
    out: list[int] = []
    for item in items:
        if isinstance(item, str):
            start, stop, step = (int(part) for part in item.split(":"))
            out.extend(range(start, stop + 1, step))
        else:
            out.append(item)
    return out


def epoch_list(v: Any) -> str | None:
    """A schedule's epochs: integers >= 0 and ranges, strictly increasing, at most
    MAX_SCHEDULED_EPOCHS of them (counted before the ranges are laid out)."""
    what = "a non-empty list of epochs >= 0 (integers or 'start:stop:step'), strictly increasing"
    if not isinstance(v, (list, tuple)) or not v:
        return f"expected {what}"
    try:
        if any(isinstance(x, str) and len(x.split(":")) != 3 for x in v):
            raise ValueError
        spans = [[int(p) for p in x.split(":")] if isinstance(x, str) else None for x in v]
        listed = sum(len(range(s[0], s[1] + 1, s[2])) if s else 1 for s in spans)
        if listed > MAX_SCHEDULED_EPOCHS:  # counted before they are laid out
            return f"expected at most {MAX_SCHEDULED_EPOCHS:,} epochs listed ({listed:,} here)"
        epochs = expand_epochs(v)
    except (ValueError, TypeError):
        return f"expected {what}"
    if not epochs or any(isinstance(x, str) and not expand_epochs([x]) for x in v):
        return f"expected {what} (a range here is empty)"
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in epochs) or any(
            b <= a for a, b in zip(epochs, epochs[1:])):
        return f"expected {what}"


def reductions(v: Any) -> str | None:
    """A mapping of capture point -> reduction (REDUCTIONS)."""
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        return f"expected a mapping of capture point -> {REDUCTIONS}"
    for point, spec in v.items():
        kind, _, size = spec.partition(":")
        if not ((kind in REDUCTION_KINDS and not size)
                or (kind in SIZED_REDUCTION_KINDS and size.isdigit() and int(size) > 0)
                or (kind == "tokens" and size in TOKEN_REDUCTIONS)):
            return f"{point}: expected {REDUCTIONS}"


def components(v: Any) -> str | None:
    """One MASC n (a fraction of explained variance in (0, 1), or a component count >= 1)
    or a non-empty list of distinct ones (the n ablation)."""
    what = "expected a number > 0 or a non-empty list of distinct numbers > 0"
    values = list(v) if isinstance(v, (list, tuple)) else [v]
    if not values or any(number(0.0, lo_open=True)(x) for x in values):
        return what
    if len({float(x) for x in values}) != len(values):
        return what


def init_epoch(v: Any) -> str | None:
    """A source epoch: an integer >= 0 or "final"."""
    if v != "final" and number(0, integer=True)(v):
        return "expected an integer >= 0 or final"


# Pipeline and run names become folder and file names under --root.
UNSAFE_CHARACTERS = ("/", "\\", "\0")


def _control(name: str) -> bool:
    """A newline, tab or other control character: a name that no listing shows whole."""
    return any(ord(c) < 32 or ord(c) == 127 for c in name)


def check_file_name(name: Any, what: str) -> None:
    """A pipeline or run name must be one plain file name: nothing that could leave the
    root (`/`, `..`) or hide (a leading `.`).

    Parameters
    ----------
    name : str
        The name.
    what : str
        What it names, for the message ("pipeline name", "PIPELINE: run name").

    Raises
    ------
    ConfigError
        For anything but a plain file name.
    """
    if (not isinstance(name, str) or not name or name.startswith(".")
            or any(c in name for c in UNSAFE_CHARACTERS) or _control(name)):
        hint = ("swept values must be names or numbers, not paths" if "run name" in what
                else "it names a folder under --root")
        raise ConfigError(f"{what}: expected a plain file name (no '/', '\\', control characters "
                          f"such as a newline, or leading '.'; "
                          f"{hint}), got {name!r}")
