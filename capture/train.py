"""The explicit training loop: optimizer, loss, one epoch, and the model's metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stores.config import TrainConfig


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names, with the block's hyperparameters.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The model's parameters.
    config : stores.config.TrainConfig
        optimizer, lr, momentum (SGD), betas (Adam, AdamW), weight_decay.

    Returns
    -------
    torch.optim.Optimizer
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return adam(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def loss_fn(name: str, n_classes: int):
    """Cross-entropy on labels, or MSE against one-hot targets (mean over batch and classes).

    Parameters
    ----------
    name : str
        `train.loss`: cross_entropy or mse.
    n_classes : int
        The one-hot width of mse's targets.

    Returns
    -------
    callable
        loss(logits, labels) -> scalar tensor.
    """
    if name == "cross_entropy":
        return F.cross_entropy

    def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits, F.one_hot(labels, n_classes).to(logits.dtype))

    return mse


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss, x: torch.Tensor,
                y: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """One pass over (x, y) in a seeded random order.

    A trailing batch of a single sample is skipped: BatchNorm cannot train on it.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    optimizer : torch.optim.Optimizer
        Its optimizer.
    loss : callable
        `loss_fn`'s loss.
    x, y : torch.Tensor
        The training rows and the labels training sees.
    batch_size : int
        Rows a step; 0 is full batch.
    generator : torch.Generator
        Draws the order (its state is part of a resume).

    Returns
    -------
    torch.Tensor
        The mean of the batches' losses, on the device (the caller syncs once an epoch
        to see whether training diverged).
    """
    model.train()
    n = len(x)
    batch_size = batch_size or n
    order = torch.randperm(n, generator=generator).to(x.device)
    total, count = torch.zeros((), device=x.device), 0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 and n > 1:
            continue
        optimizer.zero_grad(set_to_none=True)
        batch_loss = loss(model(x[idx]), y[idx])
        batch_loss.backward()
        optimizer.step()
        total += batch_loss.detach().float()
        count += 1
    return total / max(count, 1)


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Logits in eval mode, in batches (for the stop rule between captures).

    Parameters
    ----------
    model : torch.nn.Module
        Left in the mode it was in.
    x : torch.Tensor
        Inputs.
    batch_size : int, default 4096
        Rows a forward pass.

    Returns
    -------
    torch.Tensor
        float32 logits (n, n_classes).
    """
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def metrics(logits: torch.Tensor, loss, split_train: torch.Tensor, observed: torch.Tensor,
            true: torch.Tensor, is_test: torch.Tensor | None = None,
            is_val: torch.Tensor | None = None) -> dict[str, float]:
    """The store's metrics from probe-set logits: losses and accuracies (fractions).

    Parameters
    ----------
    logits : torch.Tensor
        The probe set's logits (n, n_classes).
    loss : callable
        `loss_fn`'s loss.
    split_train : torch.Tensor
        bool (n,): the training rows, scored against the observed labels and the true.
    observed, true : torch.Tensor
        The labels training sees, and the true ones.
    is_test : torch.Tensor, optional
        The rows of split "test" (default: all but the training rows).
    is_val : torch.Tensor, optional
        The rows of split "val"; val_acc is NaN without any.

    Returns
    -------
    dict of str to float
        train_loss, train_acc_observed, train_acc_true, test_loss, test_acc, val_acc.
    """
    train = split_train
    test = ~split_train if is_test is None else is_test
    pred = logits.argmax(1)
    out = {
        "train_loss": loss(logits[train], observed[train]),
        "train_acc_observed": (pred[train] == observed[train]).float().mean(),
        "train_acc_true": (pred[train] == true[train]).float().mean(),
        "test_loss": loss(logits[test], true[test]),
        "test_acc": (pred[test] == true[test]).float().mean(),
    }
    out = {k: float(v) for k, v in out.items()}
    has_val = is_val is not None and bool(is_val.any())
    out["val_acc"] = float((pred[is_val] == true[is_val]).float().mean()) if has_val else float("nan")
    return out


def early_stop(val_accs, patience: int) -> bool:
    """Does training stop after these val_acc values (one per epoch, in order)? When the
    last `patience` of them bring no strict improvement over the best before them (the
    first value, the model training starts from, is the first best)."""
    values = [float(v) for v in val_accs]
    return bool(values) and len(values) - 1 - best_index(values) >= patience


def best_index(values) -> int:
    """The index of the first of the best values (a tie is no improvement)."""
    values = [float(v) for v in values]
    return max(range(len(values)), key=lambda i: (values[i], -i))
