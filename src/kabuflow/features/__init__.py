"""Features stage: point-in-time feature families (one module each, one FEATURES registry) and labels."""

from kabuflow.features.labels import labels
from kabuflow.features.registry import FEATURES, families
from kabuflow.features.spec import Family, Feature
from kabuflow.features.stage import build, features

__all__ = ["FEATURES", "Family", "Feature", "build", "families", "features", "labels"]
