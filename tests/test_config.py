"""Pipelines and run configs: parsing, validation messages, hashing, overrides and the CLI."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
from pathlib import Path

import pytest
import yaml

from stores.config import (
    ConfigError,
    RunConfig,
    ScheduleConfig,
    load_pipeline,
    load_pipelines,
    parse_pipeline,
    parse_run_overrides,
    run_config_from_dict,
)

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines.yaml"
QUICKSTART_RAW = yaml.safe_load(PIPELINES.read_text())["quickstart"]
SCHEDULE = [0, 1, 2, 3, 5, 7, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]


def quickstart(**blocks) -> dict:
    """A deep copy of the repository's quickstart, with blocks merged in.

    A dict is merged into the block of that name; `sweep` and anything else replace it.
    """
    raw = copy.deepcopy(QUICKSTART_RAW)
    for block, value in blocks.items():
        if block != "sweep" and isinstance(value, dict) and isinstance(raw.get(block), dict):
            raw[block].update(value)
        else:
            raw[block] = value
    return raw


def write(tmp_path: Path, raw: dict, name: str = "quickstart", file: str = "pipelines.yaml") -> Path:
    path = tmp_path / file
    path.write_text(yaml.safe_dump({name: raw}, sort_keys=False))
    return path


def config_error(tmp_path: Path, raw: dict) -> str:
    """The message of the ConfigError that loading `raw` as quickstart raises."""
    with pytest.raises(ConfigError) as err:
        load_pipelines(write(tmp_path, raw))
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------ the repository's file
def test_repository_pipelines_parse():
    pipelines = load_pipelines(PIPELINES)
    assert "quickstart" in pipelines
    quick = pipelines["quickstart"]
    assert quick.name == "quickstart"
    assert quick.description
    assert quick.sweep == (("corruption", (0.0, 0.6)), ("seed", (0,)))


def test_quickstart_runs_are_the_two_published_runs():
    runs = load_pipeline("quickstart", PIPELINES).runs()
    assert [r.name for r in runs] == ["corruption=0.0,seed=0", "corruption=0.6,seed=0"]
    assert [r.params for r in runs] == [(("corruption", 0.0), ("seed", 0)),
                                        (("corruption", 0.6), ("seed", 0))]
    assert [r.corruption.rate for r in runs] == [0.0, 0.6]
    assert [r.seed for r in runs] == [0, 0]
    assert all(r.pipeline == "quickstart" for r in runs)
    # The two runs differ in their corruption rate only.
    assert dataclasses.replace(runs[0], corruption=runs[1].corruption, params=runs[1].params) == runs[1]
    assert runs[0].hash() != runs[1].hash()


@pytest.mark.parametrize("index", [0, 1])
def test_quickstart_carries_the_published_values(index):
    config = load_pipeline("quickstart", PIPELINES).runs()[index]
    assert isinstance(config, RunConfig)
    assert config.data.name == "digits"
    assert config.data.test_fraction == 0.2
    assert config.data.split_seed == 0
    assert config.corruption.mode == "resample"
    assert config.model.name == "mlp"
    assert config.model.widths == (512, 512, 512)
    t = config.train
    assert (t.optimizer, t.lr, t.momentum, t.batch_size, t.loss) == ("sgd", 0.05, 0.9, 32, "cross_entropy")
    assert t.weight_decay == 0.0
    assert t.max_epochs == 150
    assert t.stop_train_acc == 1.0
    assert config.capture.points == ("input", "relu1", "relu2", "relu3")
    assert config.capture.dtype == "float16"
    assert config.capture.schedule == ScheduleConfig(epochs=(0, 1, 2, 3, 5, 7, 10), every=10)
    assert config.schedule == SCHEDULE
    assert config.analysis.probes == ("masc", "masc_true", "velpic", "ncm", "knn", "logreg", "lda", "qda")
    assert config.analysis.masc_components == (0.99, 1.0, 0.25, 0.5, 0.75)  # P1's n ablation
    assert config.analysis.cross_labels
    assert config.analysis.knn_neighbors == 5
    # Numbers are parsed to their declared types.
    assert type(t.lr) is float and type(t.max_epochs) is int and type(config.seed) is int


def test_store_path():
    runs = load_pipeline("quickstart", PIPELINES).runs()
    assert runs[1].store_path("/data/runs/") == "/data/runs/quickstart/corruption=0.6,seed=0.zarr"
    assert runs[0].store_path(Path("runs")) == "runs/quickstart/corruption=0.0,seed=0.zarr"


def test_schedule_resolution():
    assert ScheduleConfig(epochs=(0, 5, 10)).resolve(150) == [0, 5, 10]
    assert ScheduleConfig(epochs=(0, 5, 10)).resolve(7) == [0, 5]
    assert ScheduleConfig(epochs=(0, 2), every=3).resolve(10) == [0, 2, 5, 8]
    assert ScheduleConfig().resolve(4) == [0]


def test_schedule_shorthand_list(tmp_path):
    raw = quickstart(capture={"schedule": [0, 5, 10]})
    config = load_pipelines(write(tmp_path, raw))["quickstart"].runs()[0]
    assert config.capture.schedule == ScheduleConfig(epochs=(0, 5, 10), every=None)
    assert config.schedule == [0, 5, 10]


def test_missing_blocks_take_the_defaults(tmp_path):
    raw = {"sweep": {"seed": [0, 1]}}
    runs = load_pipelines(write(tmp_path, raw, name="bare"))["bare"].runs()
    assert [r.name for r in runs] == ["seed=0", "seed=1"]
    assert runs[0].train == load_pipeline("quickstart", PIPELINES).runs()[0].train
    no_sweep = load_pipelines(write(tmp_path, {"seed": 3}, name="one", file="one.yaml"))["one"].runs()
    assert [(r.name, r.seed) for r in no_sweep] == [("default", 3)]


def test_every_repository_pipeline_parses_with_distinct_runs():
    for name, pipeline in load_pipelines(PIPELINES).items():
        runs = pipeline.runs()
        assert runs, name
        assert len({r.name for r in runs}) == len(runs), name
        assert len({r.hash() for r in runs}) == len(runs), name
        assert all(r.pipeline == name and r.schedule for r in runs), name


def test_schedule_range_items(tmp_path):
    raw = quickstart(train={"max_epochs": 50}, capture={"schedule": {"epochs": ["0:20:10", 25], "every": 10}})
    config = load_pipelines(write(tmp_path, raw))["quickstart"].runs()[0]
    assert config.schedule == [0, 10, 20, 25, 35, 45]
    assert run_config_from_dict(json.loads(json.dumps(config.to_dict()))).schedule == config.schedule


@pytest.mark.parametrize("epochs", [["0:10"], ["a:b:c"], ["0:10:0"], ["0:10:5", 5], [-1], ["0:10:5", 1.5]])
def test_bad_schedule_range_items(tmp_path, epochs):
    message = config_error(tmp_path, quickstart(capture={"schedule": {"epochs": epochs}}))
    assert message.startswith("quickstart.capture.schedule.epochs: expected"), message
    assert "start:stop:step" in message
    assert message.endswith(f"got {epochs!r}"), message


def test_empty_schedule_range_is_rejected(tmp_path):
    message = config_error(tmp_path, quickstart(capture={"schedule": {"epochs": ["10:0:1"], "every": 10}}))
    assert message.startswith("quickstart.capture.schedule.epochs:")


def test_betas(tmp_path):
    config = load_pipelines(write(tmp_path, quickstart(train={"betas": [0.9, 0.98]})))["quickstart"].runs()[0]
    assert config.train.betas == (0.9, 0.98)
    for bad in ([0.9], [0.9, 1.0], [0.9, "x"], 0.9):
        message = config_error(tmp_path, quickstart(train={"betas": bad}))
        assert message.startswith("quickstart.train.betas: expected two numbers"), message
        assert message.endswith(f"got {bad!r}"), message


def test_betas_int_and_float_spellings_share_a_hash(tmp_path):
    a = load_pipelines(write(tmp_path, quickstart(train={"betas": [0, 0.98]}), file="a.yaml"))
    b = load_pipelines(write(tmp_path, quickstart(train={"betas": [0.0, 0.98]}), file="b.yaml"))
    assert a["quickstart"].runs()[0].hash() == b["quickstart"].runs()[0].hash()


def test_sweep_aliases(tmp_path):
    raw = quickstart(sweep={"xi": [0.35], "weight_decay": [0, 5]})
    runs = load_pipelines(write(tmp_path, raw))["quickstart"].runs()
    assert [r.name for r in runs] == ["xi=0.35,weight_decay=0.0", "xi=0.35,weight_decay=5.0"]
    assert [(r.corruption.rate, r.train.weight_decay) for r in runs] == [(0.35, 0.0), (0.35, 5.0)]
    assert [r.params for r in runs][1] == (("xi", 0.35), ("weight_decay", 5.0))


# ------------------------------------------------------------------ frozen
def test_configs_are_frozen():
    config = load_pipeline("quickstart", PIPELINES).runs()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.capture.schedule.every = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.corruption = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_pipeline("quickstart", PIPELINES).name = "other"
    assert config.train.lr == 0.05 and config.seed == 0


# ------------------------------------------------------------------ unknown keys
def test_unknown_key_in_a_block(tmp_path):
    message = config_error(tmp_path, quickstart(train={"lrr": 0.1}))
    assert message.startswith("quickstart.train:")
    assert "'lrr'" in message
    assert "expected one of" in message
    for allowed in ("optimizer", "lr", "momentum", "batch_size", "max_epochs", "stop_train_acc"):
        assert allowed in message
    assert "pipeline" not in message.split("expected one of")[1]  # internal fields are not offered


def test_unknown_key_in_a_nested_block(tmp_path):
    message = config_error(tmp_path, quickstart(capture={"schedule": {"epochs": [0], "evry": 5}}))
    assert message.startswith("quickstart.capture.schedule:")
    assert "'evry'" in message and "epochs" in message and "every" in message


def test_unknown_key_at_the_pipeline_level(tmp_path):
    raw = quickstart()
    raw["trian"] = {"lr": 0.1}
    message = config_error(tmp_path, raw)
    assert message.startswith("quickstart:")
    assert "'trian'" in message
    for allowed in ("train", "capture", "sweep", "description", "analysis"):
        assert allowed in message


# ------------------------------------------------------------------ bad values
BAD_VALUES = [
    # (blocks to merge into quickstart, key path in the message, `got` part of the message)
    ({"train": {"lr": -1}}, "quickstart.train.lr", "got -1"),
    ({"train": {"lr": 0}}, "quickstart.train.lr", "got 0"),
    ({"train": {"lr": "fast"}}, "quickstart.train.lr", "got 'fast'"),
    ({"train": {"momentum": 1.5}}, "quickstart.train.momentum", "got 1.5"),
    ({"train": {"max_epochs": 1.5}}, "quickstart.train.max_epochs", "got 1.5"),
    ({"train": {"max_epochs": "150"}}, "quickstart.train.max_epochs", "got '150'"),
    ({"train": {"batch_size": True}}, "quickstart.train.batch_size", "got True"),
    ({"train": {"optimizer": "lbfgs"}}, "quickstart.train.optimizer", "got 'lbfgs'"),
    ({"train": {"stop_train_acc": 0}}, "quickstart.train.stop_train_acc", "got 0"),
    ({"corruption": {"mode": "flip"}}, "quickstart.corruption.mode", "got 'flip'"),
    ({"model": {"widths": [512, -3]}}, "quickstart.model.widths", "got [512, -3]"),
    ({"model": {"widths": []}}, "quickstart.model.widths", "got []"),
    ({"model": {"widths": 512}}, "quickstart.model.widths", "got 512"),
    ({"capture": {"dtype": "float64"}}, "quickstart.capture.dtype", "got 'float64'"),
    ({"capture": {"schedule": {"epochs": [5, 3]}}}, "quickstart.capture.schedule.epochs", "got [5, 3]"),
    ({"capture": {"schedule": {"epochs": [0, 5, 5]}}}, "quickstart.capture.schedule.epochs",
     "got [0, 5, 5]"),
    ({"capture": {"schedule": {"epochs": [0], "every": 0}}}, "quickstart.capture.schedule.every",
     "got 0"),
    ({"capture": {"points": []}}, "quickstart.capture.points", "got []"),
    ({"data": {"test_fraction": 0}}, "quickstart.data.test_fraction", "got 0"),
    ({"data": {"name": "imagenet21k"}}, "quickstart.data.name", "got 'imagenet21k'"),
    ({"analysis": {"probes": ["masc", "bogus"]}}, "quickstart.analysis.probes", "got ['masc', 'bogus']"),
    ({"sweep": {"corruption": [0.0]}, "seed": -1}, "quickstart.seed", "got -1"),
    ({"train": 5}, "quickstart.train", "got 5"),
    ({"sweep": {"corruption": [0.0, 1.5], "seed": [0]}}, "quickstart.corruption.rate", "got 1.5"),
    ({"sweep": {"corruption": ["high"], "seed": [0]}}, "quickstart.corruption.rate", "got 'high'"),
    ({"sweep": {"corruption": [0.0], "seed": [0, -2]}}, "quickstart.seed", "got -2"),
]


@pytest.mark.parametrize(("blocks", "where", "got"), BAD_VALUES,
                         ids=[f"{w}={g[4:]}" for _, w, g in BAD_VALUES])
def test_bad_value_names_the_key_and_the_value(tmp_path, blocks, where, got):
    message = config_error(tmp_path, quickstart(**blocks))
    assert message.startswith(f"{where}: "), message
    assert "expected" in message, message
    assert message.endswith(got), message


def test_bad_value_message_says_what_is_allowed(tmp_path):
    assert "resample, fraction, shuffle" in config_error(tmp_path, quickstart(corruption={"mode": "flip"}))
    assert "float16, float32" in config_error(tmp_path, quickstart(capture={"dtype": "float64"}))
    assert "strictly increasing" in config_error(
        tmp_path, quickstart(capture={"schedule": {"epochs": [5, 3]}}))
    assert "[0.0, 1.0]" in config_error(
        tmp_path, quickstart(sweep={"corruption": [1.5], "seed": [0]}))
    assert "a number" in config_error(tmp_path, quickstart(train={"lr": "fast"}))


@pytest.mark.parametrize("blocks", [{"train": {"lr": float("nan")}},
                                    {"sweep": {"corruption": [float("nan")], "seed": [0]}}],
                         ids=["train.lr", "corruption.rate"])
def test_nan_is_rejected(tmp_path, blocks):
    config_error(tmp_path, quickstart(**blocks))


# ------------------------------------------------------------------ sweeps
def test_sweep_over_an_unknown_path_is_rejected(tmp_path):
    message = config_error(tmp_path, quickstart(sweep={"train.lrr": [0.1]}))
    assert message.startswith("quickstart.sweep.train.lrr:")
    assert "'train.lrr'" in message and "lr" in message
    message = config_error(tmp_path, quickstart(sweep={"bogus": [1]}))
    assert message.startswith("quickstart.sweep.bogus:") and "'bogus'" in message
    assert "corruption" in message and "train" in message


def test_sweep_naming_a_block_is_rejected(tmp_path):
    message = config_error(tmp_path, quickstart(sweep={"train": [{"lr": 0.1}]}))
    assert message.startswith("quickstart.sweep.train:")
    assert "block" in message
    message = config_error(tmp_path, quickstart(sweep={"capture.schedule": [[0, 1]]}))
    assert "block" in message


def test_sweep_below_a_scalar_is_rejected(tmp_path):
    message = config_error(tmp_path, quickstart(sweep={"seed.x": [0]}))
    assert message.startswith("quickstart.sweep.seed.x:") and "'seed'" in message


@pytest.mark.parametrize("values", [0.6, [], "0.6"])
def test_sweep_values_must_be_a_non_empty_list(tmp_path, values):
    message = config_error(tmp_path, quickstart(sweep={"corruption": values}))
    assert message.startswith("quickstart.sweep.corruption:") and "non-empty list" in message


def test_sweep_over_a_dotted_path(tmp_path):
    raw = quickstart(sweep={"corruption": [0.6], "train.lr": [0.05, 1]})
    runs = load_pipelines(write(tmp_path, raw))["quickstart"].runs()
    assert [r.name for r in runs] == ["corruption=0.6,train.lr=0.05", "corruption=0.6,train.lr=1.0"]
    assert [r.train.lr for r in runs] == [0.05, 1.0]
    assert len({r.hash() for r in runs}) == 2


def test_swept_values_are_named_by_their_parsed_value(tmp_path):
    raw = quickstart(sweep={"corruption": [0, 1], "seed": [0]})
    runs = load_pipelines(write(tmp_path, raw))["quickstart"].runs()
    assert [r.name for r in runs] == ["corruption=0.0,seed=0", "corruption=1.0,seed=0"]


def test_a_swept_value_overrides_the_block_value_which_is_still_checked(tmp_path):
    raw = quickstart(sweep={"train.lr": [0.1]})  # quickstart's train block has lr: 0.05
    assert load_pipelines(write(tmp_path, raw))["quickstart"].runs()[0].train.lr == 0.1
    message = config_error(tmp_path, quickstart(seed=-1))  # seed is swept: [0]
    assert message.startswith("quickstart.seed: ") and message.endswith("got -1")


# ------------------------------------------------------------------ hash
def test_identical_configs_share_a_hash(tmp_path):
    a = load_pipelines(PIPELINES)["quickstart"].runs()
    b = load_pipelines(write(tmp_path, quickstart()))["quickstart"].runs()
    assert a == b
    assert [r.hash() for r in a] == [r.hash() for r in b]
    h = a[0].hash()
    assert len(h) == 64 and int(h, 16) >= 0
    assert a[0].hash() == h  # stable across calls


def test_int_and_float_spellings_share_a_hash(tmp_path):
    one = load_pipelines(write(tmp_path, quickstart(train={"lr": 1}), file="a.yaml"))
    one_f = load_pipelines(write(tmp_path, quickstart(train={"lr": 1.0}), file="b.yaml"))
    a, b = one["quickstart"].runs()[1], one_f["quickstart"].runs()[1]
    assert type(a.train.lr) is float and a.train.lr == 1.0
    assert a == b and a.hash() == b.hash()
    c = load_pipelines(write(tmp_path, quickstart(train={"momentum": 0, "stop_train_acc": 1}),
                             file="c.yaml"))["quickstart"].runs()[0]
    d = load_pipelines(write(tmp_path, quickstart(train={"momentum": 0.0, "stop_train_acc": 1.0}),
                             file="d.yaml"))["quickstart"].runs()[0]
    assert c.hash() == d.hash()


def test_analysis_settings_do_not_change_the_hash(tmp_path):
    base = load_pipeline("quickstart", PIPELINES).runs()[1]
    raw = quickstart(analysis={"knn_neighbors": 9, "probes": ["ncm"], "masc_components": 0.5})
    other = load_pipelines(write(tmp_path, raw))["quickstart"].runs()[1]
    assert other.analysis != base.analysis and other != base
    assert other.hash() == base.hash()
    assert "analysis" not in base.identity()
    assert other.identity() == base.identity()


@pytest.mark.parametrize("blocks", [
    {"train": {"lr": 0.1}},
    {"train": {"max_epochs": 149}},
    {"model": {"widths": [512, 512]}},
    {"corruption": {"mode": "fraction"}},
    {"capture": {"dtype": "float32"}},
    {"data": {"split_seed": 1}},
], ids=lambda b: json.dumps(b))
def test_data_settings_change_the_hash(tmp_path, blocks):
    base = load_pipeline("quickstart", PIPELINES).runs()[1]
    other = load_pipelines(write(tmp_path, quickstart(**blocks)))["quickstart"].runs()[1]
    assert other.name == base.name
    assert other.hash() != base.hash()


def test_seed_changes_the_hash(tmp_path):
    runs = load_pipelines(write(tmp_path, quickstart(sweep={"seed": [0, 1]})))["quickstart"].runs()
    assert [(r.name, r.seed) for r in runs] == [("seed=0", 0), ("seed=1", 1)]
    assert runs[0].hash() != runs[1].hash()
    raw = quickstart(sweep={"corruption": [0.6]}, seed=1)
    one = load_pipelines(write(tmp_path, raw, file="one.yaml"))["quickstart"].runs()
    assert [(r.name, r.seed) for r in one] == [("corruption=0.6", 1)]


# ------------------------------------------------------------------ --run overrides
def test_run_by_swept_values():
    pipeline = load_pipeline("quickstart", PIPELINES)
    runs = pipeline.runs()
    assert pipeline.run({"corruption": 0.6}) == runs[1]
    assert pipeline.run({"corruption": 0.6}).name == "corruption=0.6,seed=0"
    assert pipeline.run({"corruption": 0.6, "seed": 0}).hash() == runs[1].hash()
    assert pipeline.run({}) == runs[0]
    assert pipeline.run({"corruption": 0}) == runs[0]  # named by the parsed value


def test_run_with_an_unknown_key_names_the_allowed_keys():
    pipeline = load_pipeline("quickstart", PIPELINES)
    with pytest.raises(ConfigError) as err:
        pipeline.run({"lr": 0.1})
    message = str(err.value)
    assert "'lr'" in message and "corruption" in message and "seed" in message


def test_run_with_a_bad_value_is_rejected():
    pipeline = load_pipeline("quickstart", PIPELINES)
    with pytest.raises(ConfigError, match=r"quickstart\.corruption\.rate: .*got 1\.5$"):
        pipeline.run({"corruption": 1.5})
    with pytest.raises(ConfigError, match=r"quickstart\.seed: .*got 'x'$"):
        pipeline.run({"seed": "x"})


def test_parse_run_overrides():
    parsed = parse_run_overrides("corruption=0.6,seed=0")
    assert parsed == {"corruption": 0.6, "seed": 0}
    assert type(parsed["corruption"]) is float and type(parsed["seed"]) is int
    assert parse_run_overrides(" corruption = 0.6 , seed=1 ,") == {"corruption": 0.6, "seed": 1}
    assert parse_run_overrides("") == {}
    pipeline = load_pipeline("quickstart", PIPELINES)
    assert pipeline.run(parse_run_overrides("corruption=0.6,seed=0")) == pipeline.runs()[1]


@pytest.mark.parametrize("text", ["corruption", "corruption=0.6,seed", "=0.6", "corruption:0.6"])
def test_parse_run_overrides_rejects_malformed_items(text):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_run_overrides(text)


def test_parse_run_overrides_rejects_invalid_yaml_values():
    with pytest.raises(ConfigError) as err:
        parse_run_overrides("corruption=[")
    assert "--run" in str(err.value) and "corruption" in str(err.value) and "'['" in str(err.value)


# ------------------------------------------------------------------ --run selects a swept run
def odd_names_pipeline(tmp_path: Path):
    """Swept values whose run names hold a list, null and a comma."""
    raw = quickstart(sweep={"model.widths": [[8, 8, 8], [16, 8, 8]], "data.root": [None, "a,b"]})
    return load_pipelines(write(tmp_path, raw))["quickstart"]


def test_run_names_holding_lists_null_and_commas_pass_back_to_run(tmp_path):
    """`--list` and `repair` print run names; each one given to `--run` is that run."""
    pipeline = odd_names_pipeline(tmp_path)
    runs = pipeline.runs()
    assert [r.name for r in runs] == ["model.widths=(8, 8, 8),data.root=None",
                                      "model.widths=(8, 8, 8),data.root=a,b",
                                      "model.widths=(16, 8, 8),data.root=None",
                                      "model.widths=(16, 8, 8),data.root=a,b"]
    for run in runs:
        assert pipeline.select(run.name) == run
    # the same values spelled as YAML, and keys left out taking their first value
    assert pipeline.select("model.widths=[16, 8, 8],data.root=null") == runs[2]
    assert pipeline.select("data.root=a,b") == runs[1]
    assert pipeline.select("model.widths=[16,8,8]") == runs[2]


def test_run_selects_the_sweep_of_quickstart():
    pipeline = load_pipeline("quickstart", PIPELINES)
    runs = pipeline.runs()
    assert pipeline.select("corruption=0.6,seed=0") == runs[1]
    assert pipeline.select(" corruption = 0.60 , seed=0 ,") == runs[1]
    assert pipeline.select("corruption=0") == runs[0]  # 0 and 0.0: one value, one run


@pytest.mark.parametrize("text, message", [
    ("corruption=0.37,seed=0", (r"^--run: corruption=0\.37 is not in the sweep of quickstart: "
                                r"expected one of 0\.0, 0\.6$")),
    ("corruption=0.6,seed=1", r"^--run: seed=1 is not in the sweep of quickstart: expected one of 0$"),
    ("corruption=[", r"^--run: corruption=\[ is not in the sweep"),
    ("lr=0.1", r"^--run: unknown key 'lr': expected one of corruption, seed$"),
    ("corruption", r"^--run: expected KEY=VALUE\[,KEY=VALUE\.\.\.\], got 'corruption'$"),
])
def test_run_outside_the_sweep_is_refused_with_the_swept_values(text, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline("quickstart", PIPELINES).select(text)


def test_run_outside_a_sweep_of_lists_names_them(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.widths=\[4\] is not in the sweep of quickstart: "
                                          r"expected one of \(8, 8, 8\), \(16, 8, 8\)$"):
        odd_names_pipeline(tmp_path).select("model.widths=[4]")


def test_cli_list_then_run_by_name(tmp_path, capsys):
    """Each line of `--list` given back to `--run` is the same run (`--list-layers`, so
    that nothing is trained)."""
    from capture.__main__ import main

    pipelines = write(tmp_path, quickstart(sweep={"model.widths": [[8, 8, 8], [16, 8, 8]],
                                                  "data.root": [None, "a,b"]}))
    common = ["quickstart", "--pipelines", str(pipelines), "--root", str(tmp_path / "runs"), "--quiet"]
    assert main([*common, "--list"]) == 0
    names = [line.split("\t", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert len(names) == 4
    for name in names:
        assert main([*common, "--run", name, "--list-layers"]) == 0
        fc1 = name.removeprefix("model.widths=(").split(",")[0]
        assert f"flatten -> {fc1} units" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ duplicate keys, schedules
@pytest.mark.parametrize("body, key, lines", [
    ("quickstart:\n  seed: 1\nquickstart:\n  seed: 2\n", "quickstart", (1, 3)),
    ("quickstart:\n  train:\n    lr: 0.1\n    momentum: 0.5\n    lr: 0.2\n", "lr", (3, 5)),
    ("quickstart: {sweep: {seed: [0], seed: [1]}}\n", "seed", (1, 1)),
])
def test_duplicate_keys_are_refused_with_both_lines(tmp_path, body, key, lines):
    path = tmp_path / "pipelines.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=rf"^{path}: duplicate key '{key}' at lines {lines[0]} and "
                                          rf"{lines[1]} \(YAML would silently keep the second\)"):
        load_pipelines(path)


def test_merge_keys_may_still_be_overridden(tmp_path):
    """`<<: *anchor` then a key of the anchor is YAML's override, not a duplicate."""
    path = tmp_path / "pipelines.yaml"
    path.write_text("quickstart:\n  train: {<<: {lr: 0.1, momentum: 0.5}, lr: 0.2}\n")
    assert load_pipelines(path)["quickstart"].runs()[0].train.lr == 0.2


def test_an_explicit_epoch_past_max_epochs_is_refused(tmp_path):
    message = config_error(tmp_path, quickstart(train={"max_epochs": 10},
                                                capture={"schedule": {"epochs": [0, 5, 12]}}))
    assert message == ("quickstart.capture.schedule.epochs: epoch 12 is beyond train.max_epochs = 10: "
                       "expected epochs up to 10 (or raise train.max_epochs)")


def test_a_rule_or_every_is_cut_at_max_epochs_without_complaint(tmp_path):
    rule = load_pipelines(write(tmp_path, quickstart(train={"max_epochs": 10},
                                                      capture={"schedule": {"rule": "ketha2026"}})))
    assert rule["quickstart"].runs()[0].schedule == [0, 1, 2, 4, 6, 8, 10]


@pytest.mark.parametrize("max_epochs, every", [(10_000, 1), (10**7, 2), (10**12, 5)])
def test_schedule_count_is_len_of_resolve_or_refused(tmp_path, max_epochs, every):
    schedule = ScheduleConfig((0, 1, "2:20:2"), every=every)
    n = len(range(20 + every, max_epochs + 1, every)) + 12
    assert schedule.count(max_epochs) == n
    if max_epochs <= 10_000:
        assert len(schedule.resolve(max_epochs)) == n
        return
    message = config_error(tmp_path, quickstart(train={"max_epochs": max_epochs},
                                                capture={"schedule": {"epochs": [0, 1, "2:20:2"],
                                                                      "every": every}}))
    assert message.startswith(f"quickstart.capture.schedule: {n:,} scheduled epochs up to "
                              f"train.max_epochs = {max_epochs:,}: expected at most 10,000 per run")


@pytest.mark.parametrize("name", ["bad\nname", "tab\tname", "bell\x07"])
def test_control_characters_in_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="pipeline name: expected a plain file name .*control characters"):
        load_pipelines(write(tmp_path, quickstart(), name=name))
    message = config_error(tmp_path, quickstart(sweep={"data.root": [name]}))
    assert "run name: expected a plain file name" in message and repr(f"data.root={name}") in message


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("via_json", [False, True], ids=["dict", "json"])
def test_run_config_round_trips_through_a_dict(via_json):
    for config in load_pipeline("quickstart", PIPELINES).runs():
        raw = config.to_dict()
        assert raw["params"] == dict(config.params)
        assert raw["train"]["lr"] == 0.05
        if via_json:  # as a store records it
            raw = json.loads(json.dumps(raw))
        again = run_config_from_dict(raw)
        assert again == config
        assert again.hash() == config.hash()
        assert again.name == config.name
        assert again.schedule == config.schedule


def test_run_config_from_dict_validates():
    raw = load_pipeline("quickstart", PIPELINES).runs()[1].to_dict()
    raw["train"]["lr"] = -1
    with pytest.raises(ConfigError, match=r"quickstart\.train\.lr: .*got -1$"):
        run_config_from_dict(raw)


# ------------------------------------------------------------------ loading
def test_unknown_pipeline_name_lists_the_pipelines():
    with pytest.raises(ConfigError) as err:
        load_pipeline("nope", PIPELINES)
    assert "quickstart" in str(err.value) and "'nope'" in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pipelines(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("quickstart: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipelines(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- quickstart\n")
    with pytest.raises(ConfigError, match="expected a mapping of pipeline names"):
        load_pipelines(listing)


def test_parse_pipeline_directly():
    pipeline = parse_pipeline("quickstart", quickstart())
    assert pipeline.runs() == load_pipeline("quickstart", PIPELINES).runs()
    with pytest.raises(ConfigError, match=r"^other: expected a mapping"):
        parse_pipeline("other", [1, 2])


# ------------------------------------------------------------------ the CLI
CLI_CASES = {
    "unknown_key": quickstart(train={"lrr": 0.1}),
    "bad_value": quickstart(train={"lr": -1}),
}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """`python -m capture quickstart` on each bad file, through the `main` the command
    line calls (tests/test_bad_inputs.py runs such lines as real processes too)."""
    from capture.__main__ import main

    base = tmp_path_factory.mktemp("cli")
    results = {}
    for case, raw in CLI_CASES.items():
        (base / case).mkdir()
        pipelines = write(base / case, raw)
        root = base / case / "runs"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["quickstart", "--pipelines", str(pipelines), "--root", str(root), "--quiet"])
        results[case] = (code, out.getvalue(), err.getvalue(), root)
    return results


def _check_cli_error(rc: int, out: str, err: str, root: Path) -> str:
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert out == ""
    assert not root.exists() or not any(root.iterdir()), "a store directory was created"
    return lines[0]


def test_cli_unknown_key(cli_results):
    line = _check_cli_error(*cli_results["unknown_key"])
    assert "quickstart.train" in line and "'lrr'" in line and "lr" in line


def test_cli_bad_value(cli_results):
    line = _check_cli_error(*cli_results["bad_value"])
    assert "quickstart.train.lr" in line and "got -1" in line


def test_cli_unknown_pipeline(tmp_path, capsys):
    from capture.__main__ import main

    root = tmp_path / "runs"
    rc = main(["nope", "--pipelines", str(PIPELINES), "--root", str(root), "--quiet"])
    captured = capsys.readouterr()
    line = _check_cli_error(rc, captured.out, captured.err, root)
    assert "quickstart" in line and "'nope'" in line


def test_cli_bad_run_override(tmp_path, capsys):
    from capture.__main__ import main

    root = tmp_path / "runs"
    rc = main(["quickstart", "--pipelines", str(PIPELINES), "--root", str(root), "--quiet",
               "--run", "lr=0.1"])
    captured = capsys.readouterr()
    line = _check_cli_error(rc, captured.out, captured.err, root)
    assert "'lr'" in line and "corruption" in line and "seed" in line


def test_cli_run_override_that_is_not_yaml(tmp_path, capsys):
    from capture.__main__ import main

    root = tmp_path / "runs"
    rc = main(["quickstart", "--pipelines", str(PIPELINES), "--root", str(root), "--quiet",
               "--run", "corruption=["])
    captured = capsys.readouterr()
    line = _check_cli_error(rc, captured.out, captured.err, root)
    assert "corruption" in line


def test_identity_keeps_only_values_that_differ_from_defaults():
    """A key added to the schema later, with a default, must not change old runs' hashes."""
    from stores.config import RunConfig, TrainConfig

    assert RunConfig(pipeline="x").identity() == {"pipeline": "x", "params": {}}
    changed = RunConfig(pipeline="x", train=TrainConfig(lr=0.5))
    assert changed.identity() == {"pipeline": "x", "params": {}, "train": {"lr": 0.5}}
    assert changed.hash() != RunConfig(pipeline="x").hash()


# ------------------------------------------------------------------ YAML 1.2 floats
EXPONENT_SPELLINGS = {"1e-3": 1e-3, "2e-4": 2e-4, "1E-3": 1e-3, "1e3": 1000.0, "+5e-1": 0.5,
                      "1.5e-2": 0.015, ".5e-1": 0.05, "1.e-2": 0.01, "1.0e+2": 100.0}


@pytest.mark.parametrize("text, value", EXPONENT_SPELLINGS.items())
def test_yaml_12_floats_parse_in_a_pipelines_file(tmp_path, text, value):
    """PyYAML (YAML 1.1) reads `1e-3` as a string; the pipelines parser reads it as
    YAML 1.2 does, a float: the same config (and hash) as the decimal spelling."""
    if "." not in text:  # YAML 1.1 floats need a dot (and a signed exponent)
        assert isinstance(yaml.safe_load(f"lr: {text}")["lr"], str)  # what plain PyYAML does
    body = yaml.safe_dump({"quickstart": quickstart(train={"lr": "LR"})}, sort_keys=False)
    path = tmp_path / "pipelines.yaml"
    path.write_text(body.replace("lr: LR", f"lr: {text}"))
    config = load_pipelines(path)["quickstart"].runs()[0]
    assert config.train.lr == value and isinstance(config.train.lr, float)
    decimal = load_pipelines(write(tmp_path, quickstart(train={"lr": value}), file="b.yaml"))
    assert decimal["quickstart"].runs()[0].hash() == config.hash()


def test_yaml_12_floats_parse_in_run_overrides(tmp_path):
    text = yaml.safe_dump({"quickstart": quickstart(sweep={"train.lr": [0.001, 0.0002], "seed": [0]})},
                          sort_keys=False)
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    pipeline = load_pipeline("quickstart", path)
    assert parse_run_overrides("train.lr=1e-3,seed=0") == {"train.lr": 0.001, "seed": 0}
    run = pipeline.run(parse_run_overrides("train.lr=2e-4"))
    assert run.train.lr == 2e-4 and run.name == "train.lr=0.0002,seed=0"
    assert run.hash() == pipeline.runs()[1].hash()


def test_yaml_integers_and_words_stay_what_they_were():
    from stores.config import yaml_load

    assert yaml_load("[1, -3, 0.5, .inf, 1_000, abc, '1e-3', 1e3x]") == [
        1, -3, 0.5, float("inf"), 1000, "abc", "1e-3", "1e3x"]
    assert isinstance(yaml_load("7"), int)


def test_a_quoted_exponent_is_still_a_string_and_is_rejected(tmp_path):
    body = yaml.safe_dump({"quickstart": quickstart(train={"lr": "LR"})}, sort_keys=False)
    path = tmp_path / "pipelines.yaml"
    path.write_text(body.replace("lr: LR", "lr: '1e-3'"))
    with pytest.raises(ConfigError) as err:
        load_pipelines(path)
    assert str(err.value) == "quickstart.train.lr: expected a number in (0.0, inf], got '1e-3'"


# ------------------------------------------------------------------ corruption.seed
def test_corruption_seed_defaults_to_the_run_seed_and_keeps_old_hashes(tmp_path):
    config = load_pipelines(write(tmp_path, quickstart()))["quickstart"].runs()[0]
    assert config.corruption.seed is None and "seed" not in config.identity().get("corruption", {})
    fixed = load_pipelines(write(tmp_path, quickstart(corruption={"seed": 42})))["quickstart"].runs()[0]
    assert fixed.corruption.seed == 42 and fixed.hash() != config.hash()


@pytest.mark.parametrize("value", [-1, 1.5, "42", True])
def test_corruption_seed_must_be_a_non_negative_integer(tmp_path, value):
    message = config_error(tmp_path, quickstart(corruption={"seed": value}))
    assert message.startswith("quickstart.corruption.seed: expected an integer in [0, inf]")
    assert message.endswith(f"got {value!r}")
