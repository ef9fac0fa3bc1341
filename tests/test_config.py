import dataclasses
import json

import pytest

from kabuflow.config import Config, ConfigError, from_dict, load
from kabuflow.version import code_version


def test_profiles_differ_where_they_should():
    local, a100 = load("local"), load("a100")
    assert (local.model.hidden, a100.model.hidden) == (32, 256)
    assert (local.model.members, a100.model.members) == (3, 1)
    assert local.pipeline.gpu is False and a100.pipeline.gpu is True
    assert a100.pipeline.parallelism == 4


def test_overrides_are_typed():
    cfg = load("local", ["train.epochs=3", "train.lr=0.01", "model.use_graph=false", "model.quantiles=[0.5]"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == 0.01
    assert cfg.model.use_graph is False
    assert cfg.model.quantiles == (0.5,)
    assert load("local", ["data.start=2020-01-06"]).data.start == "2020-01-06"
    assert load("local", ["train.lr=1"]).train.lr == 1.0  # an int is a fine float
    assert load("local", ["train.lr=4e-3"]).train.lr == 0.004  # YAML 1.1 would keep this a string


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochz=3", "unknown config key 'train.epochz'"),
        ("trian.epochs=3", "unknown config section 'trian'"),
        ("train.epochs=three", "train.epochs: expected an integer"),
        ("train.epochs=2.5", "train.epochs: expected an integer"),
        ("model.use_graph=maybe", "model.use_graph: expected true/false"),
        ("train.epochs", "not of the form section.key=value"),
        ("train.lr=fast", "train.lr: expected a number"),
        # Choice fields are checked here, at load, not by the stage that reads them in a pod.
        ("data.source=yahoo", "data.source must be one of synthetic, jquants, files, got 'yahoo'"),
        ("graph.residual=sectors", "graph.residual must be one of none, market, sector, got 'sectors'"),
        ("normalize.method=minmax", "normalize.method must be one of robust_z, rank_gauss, got 'minmax'"),
        ("normalize.dtype=float64", "normalize.dtype must be one of float16, float32, got 'float64'"),
        ("jquants.master_every=week", "jquants.master_every must be one of month, session, got 'week'"),
        ("model.input_norm=batch", "model.input_norm must be one of fan, san, none, got 'batch'"),
        ("train.device=tpu", "train.device must be one of auto, cpu, cuda, got 'tpu'"),
        (
            "evaluate.gate_model=xgb",
            "evaluate.gate_model must be one of atft, lightgbm, ridge, reversal_5d, momentum_60d",
        ),
        (
            "pipeline.models=[atft,lgbm]",
            "pipeline.models must be one of atft, lightgbm, ridge, reversal_5d, momentum_60d, low_vol_60d, got 'lgbm'",
        ),
        (
            "pipeline.trainjob_overrides=podOverrides",
            "pipeline.trainjob_overrides must be one of podSpecOverrides, podTemplateOverrides",
        ),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load("local", [override])


def test_unknown_key_in_profile_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("model:\n  hiden: 32\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.hiden'"):
        load(str(path))
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load("nope")


def test_config_is_frozen_and_round_trips_through_json():
    cfg = load("a100", ["train.epochs=7"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 1  # type: ignore[misc]
    again = from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again, Config)


def test_code_version_names_the_commit():
    version = code_version()
    assert len(version.split("-")[0]) == 40 or version.startswith("kabuflow-")


def test_with_params_replaces_fields_checked_like_overrides():
    cfg = load("local")
    got = cfg.with_params({"train.seed": 7, "model.input_norm": "san"})
    assert (got.train.seed, got.model.input_norm) == (7, "san")
    assert got.train.lr == cfg.train.lr and cfg.train.seed == 0  # the rest kept; the original untouched
    with pytest.raises(ConfigError, match="unknown config key 'train.sed'"):
        cfg.with_params({"train.sed": 1})
    with pytest.raises(ConfigError, match="model.input_norm must be one of fan, san, none, got 'bn'"):
        cfg.with_params({"model.input_norm": "bn"})


def test_stamp_leaves_out_the_cluster_section():
    stamped = load("a100").stamped()
    assert "pipeline" not in stamped and stamped["model"]["hidden"] == 256
