"""Typed, frozen run configuration: YAML profiles plus type-checked `--set section.key=value` overrides.

data.py, models.py and cluster.py hold the sections (one frozen dataclass each), loading.py the Config
tree that gathers them and every way of building one. Import from here: `from kabuflow.config import X`.
"""

from kabuflow.config.cluster import PipelineConfig, StorageConfig
from kabuflow.config.data import (
    HORIZONS,
    DataConfig,
    FeaturesConfig,
    FoldsConfig,
    GraphConfig,
    JQuantsConfig,
    NormalizeConfig,
    Source,
    SyntheticConfig,
)
from kabuflow.config.loading import Config, ConfigError, field_type, from_dict, from_json, load
from kabuflow.config.models import (
    SEARCHABLE_SECTIONS,
    AuditConfig,
    EvaluateConfig,
    HPOConfig,
    LightGBMConfig,
    ModelConfig,
    ModelName,
    RidgeConfig,
    SearchDim,
    TrainConfig,
)

__all__ = [
    "HORIZONS",
    "SEARCHABLE_SECTIONS",
    "AuditConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "FeaturesConfig",
    "FoldsConfig",
    "GraphConfig",
    "HPOConfig",
    "JQuantsConfig",
    "LightGBMConfig",
    "ModelConfig",
    "ModelName",
    "NormalizeConfig",
    "PipelineConfig",
    "RidgeConfig",
    "SearchDim",
    "Source",
    "StorageConfig",
    "SyntheticConfig",
    "TrainConfig",
    "field_type",
    "from_dict",
    "from_json",
    "load",
]
