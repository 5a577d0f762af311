"""What a run will cost before it starts: stored widths, bytes per captured epoch, and
the compute of training, counted from the model itself.

`python -m capture PIPELINE --list-layers` prints this for the pipeline's first run.
Compute is counted (forward FLOPs of one sample, by torch's FLOP counter); time is an
estimate from it: `GPU_FLOPS` of sustained throughput plus `STEP_OVERHEAD_S` per
optimizer step (kernel launches, which dominate small models), both stated assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from stores import ConfigError, LayerSpec, RunConfig, schema

from .data import input_shape, split_sizes
from .models import build_model
from .points import (
    capture_layers, find_head, find_penultimate, output_shapes, resolve_points, sample_batch,
)

# A model over this many parameters is refused before a byte is allocated: its weights
# alone are 4 GB a captured epoch (ResNet-18, the largest published setup, has 11 M).
MAX_PARAMETERS = 1_000_000_000

GPU_FLOPS = 10e12  # sustained FP32 throughput assumed for an estimate (about 1/6 of an H100's peak)
STEP_OVERHEAD_S = 1e-3  # per optimizer step: launches of the forward, backward and update kernels


@dataclass(frozen=True)
class RunEstimate:
    """What one run stores and computes, counted before it starts.

    Attributes
    ----------
    layers : list of stores.LayerSpec
        The capture points as the store lays them out (reduction, stored width).
    shapes : dict of str to tuple of int
        Every capture point's per-sample output shape.
    n_train, n_test : int
        The probe set's split sizes.
    activation_bytes, weight_bytes : int
        Bytes stored per captured epoch.
    captured_epochs : int
        At most: the schedule up to `max_epochs`, plus the stop epoch.
    max_epochs : int
        The training cap (`train.max_epochs`).
    forward_flops : int
        FLOPs of one sample's forward pass.
    n_params : int
        Entries of the model's state dict (parameters and buffers): a node each in the store.
    optimizer_arrays : int
        Arrays of the optimizer's state (per trainable tensor: a momentum buffer for SGD
        with momentum, exp_avg, exp_avg_sq and step for Adam and AdamW).
    n_metrics : int
        Metrics captured at every epoch.
    """

    layers: list[LayerSpec]
    shapes: dict[str, tuple[int, ...]]
    n_train: int
    n_test: int
    activation_bytes: int  # per captured epoch
    weight_bytes: int  # per captured epoch
    captured_epochs: int  # at most: the schedule up to max_epochs, plus the stop epoch
    max_epochs: int
    forward_flops: int  # one sample
    n_params: int = 0
    optimizer_arrays: int = 0
    n_metrics: int = len(schema.METRIC_NAMES)

    @property
    def files(self) -> int:
        """Files of a run's store, at most (schema version 2; `analyze`'s results not
        counted): per captured epoch a shard per capture point and per parameter, a chunk
        per metric, the epoch's number and its commit flag; once, every node's zarr.json,
        the probe set, the coordinate copies and the two training-state copies. The count
        grows with epochs x nodes, not with chunks: a shard holds a whole epoch of a node."""
        layers, params, metrics = len(self.layers), self.n_params, self.n_metrics
        per_epoch = layers + params + metrics + 2
        samples = 2 * len(schema.SAMPLE_FIELDS)  # zarr.json and one chunk each
        # root + 5 groups; epochs' 2 arrays; a capture point's group, values and 4 sample
        # coordinates (zarr.json and a chunk each); a parameter's group and values; the
        # epoch copies (3) and the sample coordinate (zarr.json and a chunk each)
        nodes = 6 + 2 + layers * (2 + 2 * len(schema.SAMPLE_COORDS)) + 2 * params + metrics + 8
        # the state group; each of its 2 copies: 4 groups, 2 generators' states and the
        # optimizer's arrays
        state = 1 + 2 * (4 + 2 * 2 + 2 * self.optimizer_arrays)
        return self.captured_epochs * per_epoch + samples + nodes + state

    @property
    def bytes_per_epoch(self) -> int:
        """Bytes stored per captured epoch: activations and weights."""
        return self.activation_bytes + self.weight_bytes

    @property
    def train_flops(self) -> float:
        """Training (forward + backward ≈ 3 forward passes) of every epoch up to the cap,
        the forward pass over the training rows that the stop rule needs after each epoch,
        and the capture's forward pass over the whole probe set at each captured epoch."""
        per_epoch = 4 * self.forward_flops * self.n_train
        capture = self.captured_epochs * self.forward_flops * (self.n_train + self.n_test)
        return float(self.max_epochs * per_epoch + capture)

    def gpu_hours(self, batch_size: int) -> float:
        """Estimated GPU hours of the run: `train_flops` at `GPU_FLOPS`, plus
        `STEP_OVERHEAD_S` per optimizer step.

        Parameters
        ----------
        batch_size : int
            `train.batch_size` (0 or None: the whole training split, one step an epoch).

        Returns
        -------
        float
            Hours.
        """
        steps = self.max_epochs * -(-self.n_train // max(batch_size or self.n_train, 1))
        return (self.train_flops / GPU_FLOPS + steps * STEP_OVERHEAD_S) / 3600


def parameter_count(config: RunConfig) -> int:
    """The model's parameters and buffers, counted on torch's meta device.

    Nothing is allocated, so a model too large for memory is counted (and refused) all
    the same.

    Parameters
    ----------
    config : stores.RunConfig
        The run: its model block and input shape.

    Returns
    -------
    int
        Elements of the model's state dict.
    """
    in_shape, n_classes = input_shape(config.data)
    with torch.device("meta"):
        model = build_model(config.model, in_shape, n_classes, weights=False)
    return sum(t.numel() for t in model.state_dict().values())


def check_size(config: RunConfig) -> None:
    """Refuse a model over `MAX_PARAMETERS`, with its size, before it is built for real.

    Parameters
    ----------
    config : stores.RunConfig
        The run whose model is counted.

    Raises
    ------
    stores.ConfigError
        When the model has more than `MAX_PARAMETERS` parameters and buffers.
    """
    n = parameter_count(config)
    if n > MAX_PARAMETERS:
        what = (f"{config.model.name} with widths {list(config.model.widths)}"
                if config.model.built_in else config.model.factory)
        raise ConfigError(f"{config.pipeline}.model: {what} has {n:,} parameters "
                          f"({n * 4 / 2**30:,.1f} GiB as float32 per captured epoch): expected at "
                          f"most {MAX_PARAMETERS:,} (narrower model.widths)")


def estimate_run(config: RunConfig) -> RunEstimate:
    """Size everything a run will store and count its compute, before it starts.

    The model is built on the CPU (the data never is), with the same capture points and
    reductions that the capture would use.

    Parameters
    ----------
    config : stores.RunConfig
        The run, with its model, data, capture and schedule blocks.

    Returns
    -------
    RunEstimate

    Raises
    ------
    stores.ConfigError
        For a model over `MAX_PARAMETERS`.
    """
    check_size(config)
    in_shape, n_classes = input_shape(config.data)
    model = build_model(config.model, in_shape, n_classes, weights=False)  # sizes only
    shapes = output_shapes(model, in_shape)
    head = find_head(model, config.model.head)
    penultimate = find_penultimate(model, sample_batch(in_shape), head, config.model.penultimate)
    points = resolve_points(model, config.capture.points, penultimate)
    layers, _ = capture_layers(model, points, in_shape, config.capture.reductions,
                               config.capture.projection_seed, torch.device("cpu"), penultimate)
    n_train, n_test = split_sizes(config.data)
    schedule = config.schedule
    itemsize = np.dtype(config.capture.dtype).itemsize
    activation_bytes = (n_train + n_test) * sum(l.units for l in layers) * itemsize
    weight_bytes = sum(t.numel() for t in model.state_dict().values()) * np.dtype(schema.WEIGHT_DTYPE).itemsize
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.zeros(1, *in_shape))
    trainable = sum(1 for t in model.parameters() if t.requires_grad)
    per_tensor = {"sgd": int(config.train.momentum > 0)}.get(config.train.optimizer, 3)
    return RunEstimate(layers, shapes, n_train, n_test, int(activation_bytes), int(weight_bytes),
                len(schedule) + (config.train.max_epochs not in schedule),
                config.train.max_epochs, int(counter.get_total_flops()),
                len(model.state_dict()), trainable * per_tensor)
