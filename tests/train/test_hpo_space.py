"""The search space as config data: typed per key, widened by --set or a profile; suggest and hpo.json
turn into a Config by dataclasses.replace; `kabuflow run --hpo` reads the winner and its trial count."""

import json
import subprocess
import sys

import optuna
import pytest

from kabuflow.config import ConfigError, SearchDim, load
from kabuflow.train.hpo import apply_best, read_best, suggest


def test_profiles_scale_the_width_choices_and_set_widens_or_removes_a_key(tmp_path):
    assert load("local").hpo.space["model.hidden"] == SearchDim(choices=(16, 32, 64))
    assert load("a100").hpo.space["model.hidden"] == SearchDim(choices=(128, 256, 512))
    cfg = load(
        "local",
        [
            "hpo.space.train.lr={low: 1e-5, high: 0.1, log: true}",
            "hpo.space.train.warmup_steps={low: 10, high: 200}",
            "hpo.space.model.gat_layers=null",
        ],
    )
    assert cfg.hpo.space["train.lr"] == SearchDim(low=1e-5, high=0.1, log=True)
    assert cfg.hpo.space["train.warmup_steps"] == SearchDim(low=10, high=200)
    assert "model.gat_layers" not in cfg.hpo.space and "model.dropout" in cfg.hpo.space
    profile = tmp_path / "wide.yaml"
    profile.write_text("hpo:\n  space:\n    model.input_norm: {choices: [fan]}\n")
    assert load(str(profile)).hpo.space["model.input_norm"].choices == ("fan",)
    assert load(str(profile)).hpo.space["train.lr"] == load("local").hpo.space["train.lr"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("hpo.space.graph.top_k={low: 3, high: 9}", "hpo.space.graph.top_k: only model.* and train.*"),
        ("hpo.space.model.hiden={choices: [16]}", "hpo.space.model.hiden: 'model.hiden' is not a config key"),
        ("hpo.space.model.input_norm={low: 0, high: 1}", "model.input_norm is not a number"),
        ("hpo.space.model.hidden={choices: [wide]}", "hpo.space.model.hidden: expected an integer"),
        ("hpo.space.train.lr={low: 0.1, high: 0.01}", "needs low < high"),
        ("hpo.space.train.lr={low: 0, high: 0.01, log: true}", "low > 0 when log"),
        ("hpo.space.train.lr={choices: [0.1], low: 0.01}", "not both"),
        ("hpo.space.train.lr={lo: 0.1}", "expected {choices"),
        ("hpo.spaces.train.lr={low: 0.1}", "unknown config key 'hpo.spaces.train.lr'"),
    ],
)
def test_a_bad_space_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        load("local", [override])


def test_suggest_sets_typed_values_through_dataclasses_replace():
    cfg = load("local", ["hpo.space.train.warmup_steps={low: 10, high: 200}"])
    fixed = {
        "model.hidden": 64,
        "model.dropout": 0.25,
        "model.input_norm": "san",
        "model.gat_layers": 3,
        "train.lr": 1e-3,
        "train.weight_decay": 1e-5,
        "train.rank_weight": 0.5,
        "train.warmup_steps": 42,
    }
    tcfg = suggest(optuna.trial.FixedTrial(fixed), cfg)
    assert (tcfg.model.hidden, tcfg.model.dropout, tcfg.model.input_norm) == (64, 0.25, "san")
    assert (tcfg.model.gat_layers, tcfg.train.warmup_steps, tcfg.train.lr) == (3, 42, 1e-3)
    assert tcfg.model.lookback == cfg.model.lookback and cfg.model.hidden == 32  # the rest untouched
    study = optuna.create_study()
    drawn = study.ask()
    suggest(drawn, cfg)
    dist = drawn.distributions
    assert dist["train.warmup_steps"] == optuna.distributions.IntDistribution(10, 200)
    assert dist["train.lr"] == optuna.distributions.FloatDistribution(3e-4, 5e-3, log=True)
    assert dist["model.hidden"] == optuna.distributions.CategoricalDistribution([16, 32, 64])


def test_hpo_json_applies_the_best_settings_and_the_trial_count(tmp_path):
    hpo = {"best_params": {"model.hidden": 16, "train.lr": 0.002}, "n_trials": 12, "best_value": 0.05}
    (tmp_path / "hpo.json").write_text(json.dumps(hpo))
    for where in (tmp_path / "hpo.json", tmp_path):  # the file, or the directory that holds it
        cfg = apply_best(load("local"), read_best(where))
        assert (cfg.model.hidden, cfg.train.lr, cfg.evaluate.hpo_trials) == (16, 0.002, 12)
    with pytest.raises(ConfigError, match="unknown config key 'model.hiden'"):
        apply_best(load("local"), {"best_params": {"model.hiden": 16}, "n_trials": 1})
    with pytest.raises(ConfigError, match="model.hidden: expected an integer"):
        apply_best(load("local"), {"best_params": {"model.hidden": "16x"}, "n_trials": 1})


def test_run_with_a_missing_or_bad_hpo_file_fails_in_one_line(tmp_path):
    (tmp_path / "hpo.json").write_text('{"best_params": {}}')
    for path, message in (
        (tmp_path / "nope.json", "nope.json"),
        (tmp_path / "hpo.json", "needs best_params"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "kabuflow.cli", "run", "--hpo", str(path), "--out", str(tmp_path / "r")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1 and message in proc.stderr and proc.stderr.count("\n") == 1
        assert not (tmp_path / "r").exists()  # refused before anything ran
