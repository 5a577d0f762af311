"""The config blocks of what a run records: the captured epochs and capture points."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import schema
from . import validators as valid
from .validators import checked, expand_epochs
from .vocab import SCHEDULE_RULES


@dataclass(frozen=True)
class ScheduleConfig:
    """The captured epochs (`capture.schedule:`): the listed ones, then every `every`
    epochs after the last one (if set).

    Attributes
    ----------
    epochs : tuple of int or str
        Epochs and inclusive ranges `start:stop:step`, strictly increasing.
    every : int or None
        The step after the last listed epoch; null: none.
    rule : str or None
        A named schedule (SCHEDULE_RULES) that overrides the rest: `ketha2026`, the 2026
        paper's 0, 1, 2, 4, 6, ..., 20, then every 5.
    """

    epochs: tuple[int | str, ...] = field(default=(0,), metadata=checked(valid.epoch_list))
    every: int | None = field(default=None, metadata=checked(valid.number(1, integer=True, optional=True)))
    rule: str | None = field(default=None, metadata=checked(valid.choice(*SCHEDULE_RULES, None)))

    def count(self, max_epochs: int) -> int:
        """len(resolve(max_epochs)), counted without laying the epochs out."""
        if self.rule == "ketha2026":
            return ScheduleConfig((0, 1, "2:20:2"), every=5).count(max_epochs)
        listed = expand_epochs(self.epochs)
        n = sum(e <= max_epochs for e in listed)
        if self.every:
            n += len(range(listed[-1] + self.every, max_epochs + 1, self.every))
        return n

    def resolve(self, max_epochs: int) -> list[int]:
        """The captured epochs of a run trained up to `max_epochs`.

        Parameters
        ----------
        max_epochs : int
            The last epoch trained (`train.max_epochs`).

        Returns
        -------
        list of int
            The epochs, increasing; none beyond `max_epochs`.
        """
        if self.rule == "ketha2026":
            return ScheduleConfig((0, 1, "2:20:2"), every=5).resolve(max_epochs)
        listed = expand_epochs(self.epochs)
        out = [e for e in listed if e <= max_epochs]
        if self.every:
            start = listed[-1] + self.every
            out += list(range(start, max_epochs + 1, self.every))
        return out


@dataclass(frozen=True)
class CaptureConfig:
    """What a run's store holds (`capture:`).

    Attributes
    ----------
    points : tuple of str
        The capture points (module names; `python -m capture --list-layers` lists them).
    reductions : dict
        Capture point -> REDUCTIONS; a point left out is flattened.
    projection_seed : int
        The seed of the random projections (`project:D`).
    dtype : str
        The stored activations' dtype (schema.ACTIVATION_DTYPES).
    compressor : str
        The captured arrays' compressor (schema.COMPRESSORS).
    schedule : ScheduleConfig
        The captured epochs.
    batch_size, queue_chunks : int
        Samples per forward pass of the probe set; chunks queued for the background writer.
    """

    points: tuple[str, ...] = field(default=("input",), metadata=checked(valid.names()))
    reductions: dict = field(default_factory=dict, metadata=checked(valid.reductions))
    projection_seed: int = field(default=0, metadata=checked(valid.number(0, integer=True)))
    dtype: str = field(default="float16", metadata=checked(valid.choice(*schema.ACTIVATION_DTYPES)))
    compressor: str = field(default="none", metadata=checked(valid.choice(*schema.COMPRESSORS)))
    schedule: ScheduleConfig = ScheduleConfig()
    batch_size: int = field(default=1024, metadata=checked(valid.number(1, integer=True)))
    queue_chunks: int = field(default=8, metadata=checked(valid.number(1, integer=True)))
