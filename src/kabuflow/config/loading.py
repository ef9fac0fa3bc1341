"""The Config tree and how one is built (profiles, dicts, JSON, `--set`), each value type-checked."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from kabuflow.config.cluster import PipelineConfig, StorageConfig
from kabuflow.config.data import (
    DataConfig,
    FeaturesConfig,
    FoldsConfig,
    GraphConfig,
    JQuantsConfig,
    NormalizeConfig,
    SyntheticConfig,
)
from kabuflow.config.models import (
    SEARCHABLE_SECTIONS,
    AuditConfig,
    EvaluateConfig,
    HPOConfig,
    LightGBMConfig,
    ModelConfig,
    RidgeConfig,
    SearchDim,
    TrainConfig,
)


class ConfigError(ValueError):
    """A profile or override that does not fit the schema; the message names the key."""


@dataclass(frozen=True)
class Config:
    profile: str = "local"
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    jquants: JQuantsConfig = field(default_factory=JQuantsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lightgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
    ridge: RidgeConfig = field(default_factory=RidgeConfig)
    hpo: HPOConfig = field(default_factory=HPOConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists) for artifacts and KFP parameters."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def stamped(self) -> dict[str, Any]:
        """to_dict without the `pipeline` section, for the stamp artifacts carry: where and how a cluster
        runs a stage (resources, node selectors, secrets, retries) changes no artifact's content, and an
        artifact that carried them would differ between two clusters for no reason."""
        return {k: v for k, v in self.to_dict().items() if k != "pipeline"}

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> Config:
        """A new Config with `section.key=value` strings applied, each checked against the field's type."""
        tree = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            section, _, name = key.strip().partition(".")
            if section not in tree or not isinstance(tree[section], dict):
                raise ConfigError(f"unknown config section {section!r} in override {item!r}")
            head, _, entry = name.partition(".")
            # A mapping setting takes one entry at a time: hpo.space.train.lr={low: 1e-4, high: 1e-2}
            # replaces (or adds) that entry, hpo.space.train.lr=null removes it.
            target, name = (
                (tree[section][head], entry) if entry and head in tree[section] else (tree[section], name)
            )
            if not isinstance(target, dict) or (name not in target and target is tree[section]):
                raise ConfigError(f"unknown config key {key.strip()!r}")
            try:
                target[name] = yaml.safe_load(raw) if raw.strip() else ""
            except (yaml.YAMLError, ValueError) as err:
                raise ConfigError(f"{key.strip()}: cannot read {raw!r}: {err}") from None
            if target[name] is None and target is not tree[section]:
                del target[name]
        return from_dict(tree)

    def with_params(self, params: dict[str, Any]) -> Config:
        """A new Config with `{"section.key": value}` applied by dataclasses.replace, each value checked
        against the field's type (an HPO trial's settings, or hpo.json's best ones)."""
        changed: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            section, name, tp = field_type(key)
            changed.setdefault(section, {})[name] = _coerce(value, tp, key)
        parts = {s: dataclasses.replace(getattr(self, s), **kv) for s, kv in changed.items()}
        return dataclasses.replace(self, **parts)


def field_type(key: str) -> tuple[str, str, Any]:
    """(section, name, type) of the setting `section.name`; a ConfigError naming it when there is none."""
    section, _, name = key.partition(".")
    cls = typing.get_type_hints(Config).get(section)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(f"unknown config key {key!r}")
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ConfigError(f"unknown config key {key!r}")
    return section, name, hints[name]


def _build_space(tree: Any, where: str) -> dict[str, SearchDim]:
    """hpo.space: `{"section.key": {choices: [...]} | {low: a, high: b, log: bool}}`, typed per key."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: expected a mapping of section.key to a range or choices, got {tree!r}")
    return {key: _search_dim(spec, str(key), f"{where}.{key}") for key, spec in sorted(tree.items())}


def _search_dim(spec: Any, key: str, where: str) -> SearchDim:
    try:
        section, _, tp = field_type(key)
    except ConfigError:
        raise ConfigError(f"{where}: {key!r} is not a config key") from None
    if section not in SEARCHABLE_SECTIONS:
        raise ConfigError(f"{where}: only model.* and train.* settings can be tuned (one panel and graph)")
    known = {f.name for f in dataclasses.fields(SearchDim)}
    if not isinstance(spec, dict) or set(spec) - known:
        raise ConfigError(
            f"{where}: expected {{choices: [...]}} or {{low: a, high: b, log: false}}, got {spec!r}"
        )
    choices, low, high = spec.get("choices") or (), spec.get("low", 0.0), spec.get("high", 0.0)
    log = _coerce(spec.get("log", False), bool, f"{where}.log")
    if choices:
        if not isinstance(choices, list | tuple) or low or high or log:
            raise ConfigError(f"{where}: give a list of choices or a low/high range, not both")
        return SearchDim(choices=tuple(_coerce(c, tp, where) for c in choices))
    if tp not in (int, float):
        raise ConfigError(f"{where}: {key} is not a number, so it needs choices rather than a range")
    low, high = _coerce(low, tp, f"{where}.low"), _coerce(high, tp, f"{where}.high")
    if not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: needs low < high (and low > 0 when log), got {low!r}..{high!r}")
    return SearchDim(low=low, high=high, log=log)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check and convert one value to the declared field type; the error names the key."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item_tp, where) for v in value)
    if origin is Literal:  # a choice: checked here, once, so that a typo fails at load and not in a pod
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[0]):
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: union types are not supported in config")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 4e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if hasattr(value, "isoformat"):  # YAML turns 2024-01-04 into a date
            return value.isoformat()
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def _build(cls: type, tree: dict[str, Any], where: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ConfigError(f"unknown config key {(where + '.' if where else '') + unknown[0]!r}")
    kwargs = {}
    for name, value in tree.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
        elif typing.get_origin(tp) is dict:  # the one mapping setting: hpo.space
            kwargs[name] = _build_space(value, key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def from_dict(tree: dict[str, Any]) -> Config:
    """Build a Config from a (possibly partial) nested dict; unknown keys are errors."""
    return _build(Config, tree, "")


def from_json(config: str | dict[str, Any]) -> Config:
    """A Config from a component's `config` parameter: JSON text, or the dict KFP's local runner makes
    of JSON text that one task returns and a loop passes on (the hpo pipeline's best config)."""
    return from_dict(config if isinstance(config, dict) else json.loads(config))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(profile: str = "local", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a named profile (`local`, `a100`) or a YAML file path, then apply overrides."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        try:
            text = resources.files("kabuflow.profiles").joinpath(f"{profile}.yaml").read_text()
        except FileNotFoundError:
            raise ConfigError(f"unknown profile {profile!r} (known: local, a100, or a .yaml path)") from None
    tree = yaml.safe_load(text) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"profile {profile!r} is not a mapping")
    cfg = from_dict(_merge(Config().to_dict(), tree))
    return cfg.with_overrides(list(overrides))
