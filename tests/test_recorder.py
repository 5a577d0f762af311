"""The public recorder: a user's own model, loop and DataLoader write a store that opens,
validates and resumes like a pipeline's (tiny generated data, CPU, seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stores
from capture import ProbeSet, Recorder
from stores import StoreError
from stores.__main__ import main as stores_main
from stores.lock import lock_path

from .storecmp import differences
from .tolerance import relu_mlp_atol, unit_roundoff

N_TRAIN, N_TEST, EPOCHS = 48, 16, 4


def _data(seed: int = 0):
    """Inputs (64, 8) and labels from a random linear rule: 48 train rows, then 16 test."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_TEST, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    return x, y


def _probe(x, y) -> ProbeSet:
    loader = DataLoader(TensorDataset(x, y), batch_size=10, shuffle=False)  # 7 batches, fixed order
    split = ["train"] * N_TRAIN + ["test"] * N_TEST
    return ProbeSet(loader, y, split=split)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def _train(path: Path, crash_at: int | None = None, **options) -> Recorder:
    """A user's loop: SGD on shuffled mini-batches (their own generator), dropout (the
    global one), every epoch recorded with a free metric; raises at `crash_at`."""
    x, y = _data()
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    order = torch.Generator().manual_seed(1)
    train = DataLoader(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), batch_size=16, shuffle=True,
                       generator=order)
    with Recorder(path, model, _probe(x, y), ["0", "1"], range(EPOCHS), **options) as rec:
        rec.state(optimizer, generators=(order,))
        for epoch in range(rec.next_epoch, EPOCHS):
            grad_norm = float("nan")
            if epoch:  # epoch 0 is the initialization
                for xb, yb in train:
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(model(xb), yb).backward()
                    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), 1e9))
                    optimizer.step()
            if epoch == crash_at:
                raise RuntimeError("killed")
            rec.record(epoch, metrics=lambda logits: {
                "train_loss": nn.functional.cross_entropy(logits[:N_TRAIN], y[:N_TRAIN]),
                "grad_norm": grad_norm}, final=epoch == EPOCHS - 1)
        rec.update_attrs({"note": "mine"})
    return rec


def test_own_model_loop_and_dataloader_give_a_store_that_opens_and_validates(tmp_path, capsys):
    path = tmp_path / "mine.zarr"
    rec = _train(path)
    assert (rec.head, rec.penultimate, rec.points) == ("3", "2", ["0", "1", "2"])
    run = stores.open_run(str(path))
    assert run.attrs["status"] == "complete" and run.attrs["note"] == "mine"
    assert list(run["epochs"].epoch.values) == list(range(EPOCHS))
    h = stores.activations(run, "1").isel(epoch=-1).values  # the ReLU, float16
    x, _ = _data()
    model = rec.model.eval()
    with torch.no_grad():
        want = model[1](model[0](x)).numpy()
    # batches of 10 against one of 64: two float32 paths through fc1 (relu_mlp_atol), then
    # the store's float16 rounding, u16·|h| (half the subnormal spacing near zero)
    e = relu_mlp_atol(x.numpy(), [(model[0].weight.detach().numpy(), model[0].bias.detach().numpy())])
    u16 = unit_roundoff(np.float16)
    np.testing.assert_allclose(h, want, rtol=u16, atol=e * (1 + u16) + 2.0**-25)
    metrics = stores.metrics(run)
    assert np.isnan(metrics["grad_norm"].values[0]) and np.isfinite(metrics["grad_norm"].values[1:]).all()
    assert stores.slabs.sample_table(str(path))["split"].tolist().count("test") == N_TEST
    capsys.readouterr()
    assert stores_main(["validate", str(path)]) == 0, capsys.readouterr()


def test_resume_after_an_exception_gives_the_uninterrupted_store(tmp_path):
    reference = tmp_path / "reference.zarr"
    _train(reference)
    path = tmp_path / "resumed.zarr"
    with pytest.raises(RuntimeError, match="killed"):
        _train(path, crash_at=2)  # epochs 0 and 1 committed
    assert stores.run_attrs(str(path))["status"] == "running"
    assert not Path(lock_path(str(path))).exists()  # released on the way out
    x, y = _data()
    with pytest.raises(RuntimeError, match="again"):  # left unfinished, as it was
        with Recorder(path, _model(), _probe(x, y), ["0", "1"], range(EPOCHS)) as rec:
            assert rec.next_epoch == 0  # without `state`: nothing restored, a replay from 0
            rec.state(torch.optim.SGD(rec.model.parameters(), lr=0.1, momentum=0.9),
                      torch.Generator())
            assert rec.next_epoch == 2 and rec.history("grad_norm")[1] > 0
            raise RuntimeError("again")
    with pytest.raises(StoreError, match="complete: pass overwrite=True"):
        _train(reference)
    _train(path)
    assert differences(reference, path) == []
    assert len(stores.run_attrs(str(path))["resumes"]) == 2


class _Fails(nn.Module):
    """Raises on the forward pass given by `when` (a list, so the test can arm it)."""

    def __init__(self):
        super().__init__()
        self.calls, self.when = 0, []

    def forward(self, x):
        self.calls += 1
        if self.calls in self.when:
            raise RuntimeError("boom")
        return x


def test_hooks_are_removed_and_the_store_stays_resumable_after_an_exception(tmp_path):
    x, y = _data()
    torch.manual_seed(0)
    fails = _Fails()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), fails, nn.Linear(16, 3))
    path = tmp_path / "failing.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        with Recorder(path, model, ProbeSet(x, y), ["1"], [0, 1], batch_size=16) as rec:
            rec.record(0, metrics={"loss": 1.0})
            fails.when = [fails.calls + 2]  # the second batch of the next capture
            rec.record(1, metrics={"loss": 0.5})
    assert all(not m._forward_hooks for m in model.modules())
    assert not Path(lock_path(str(path))).exists()
    run = stores.open_run(str(path))
    assert run.attrs["status"] == "running" and list(run["epochs"].epoch.values) == [0]
    with Recorder(path, model, ProbeSet(x, y), ["1"], [0, 1], batch_size=16) as rec:
        assert rec.record(0, metrics={"loss": 9.0}) == {"loss": 1.0}  # committed: read back
        rec.record(1, metrics={"loss": 0.5})
    assert stores.metrics(str(path))["loss"].values.tolist() == [1.0, 0.5]


def test_a_probe_set_whose_batches_do_not_match_its_labels_is_refused(tmp_path):
    x, y = _data()
    short = DataLoader(TensorDataset(x[:40]), batch_size=16)
    with Recorder(tmp_path / "short.zarr", _model(), ProbeSet(short, y[:50]), ["1"], [0]) as rec:
        with pytest.raises(ValueError, match="batches give 40 rows, expected 50"):
            rec.record(0)
        rec.update_attrs({"checked": True})
    with pytest.raises(TypeError, match="re-iterable"):
        ProbeSet(iter([x]), y)
    with pytest.raises(ValueError, match="split: expected values from train, val, test"):
        ProbeSet(x, y, split=["train"] * 63 + ["holdout"])


class _TokenClassifier(nn.Module):
    """Embedding -> TransformerEncoder -> mean over tokens -> linear head."""

    def __init__(self, vocab: int = 12, width: int = 16, n_classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.pool = _MeanTokens()
        self.head = nn.Linear(width, n_classes)

    def forward(self, tokens):
        return self.head(self.pool(self.encoder(self.embed(tokens))))


class _MeanTokens(nn.Module):
    def forward(self, h):
        return h.mean(1)


def test_a_transformer_on_tokens_with_a_token_reduction(tmp_path):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 12, (40, 6), generator=g)
    labels = tokens[:, 0] % 3  # the class is in the first token
    torch.manual_seed(0)
    model = _TokenClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    probe = ProbeSet(DataLoader(TensorDataset(tokens, labels), batch_size=16), labels)
    path = tmp_path / "tokens.zarr"
    with Recorder(path, model, probe, ["encoder"], [0, 1, 2], dtype="float32",
                  reductions={"encoder": "tokens:mean"}) as rec:
        for epoch in range(3):
            if epoch:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(tokens), labels).backward()
                optimizer.step()
            rec.record(epoch)
    assert rec.penultimate == "pool"
    run = stores.open_run(str(path))
    encoder, pool = (stores.activations(run, p).isel(epoch=-1).values for p in ("encoder", "pool"))
    assert encoder.shape == (40, 16)
    # the same mean over tokens, on the device before the copy and inside the model
    np.testing.assert_allclose(encoder, pool, rtol=0, atol=8 * unit_roundoff(np.float32)
                               * float(np.abs(encoder).max() + 1))
    assert stores.layer_attrs(str(path), "encoder")["reduction"] == "tokens:mean"
