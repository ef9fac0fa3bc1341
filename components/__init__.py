"""KFP components: one per stage, each a few lines that call the kabuflow stage function.

The functions here are plain Python; `load(image)` turns them into image-backed lightweight
components (`install_kfp_package=False`: kfp and kabuflow come from the project image), so on the
cluster each stage runs in its own container and locally `SubprocessRunner(use_venv=False)` runs the
very same code. Their bodies import inside, as KFP's hermetic rule requires.
"""

from __future__ import annotations

from kfp import dsl

from components.audit import audit
from components.evaluate import evaluate, evaluate_all, promote
from components.features import features
from components.folds import folds
from components.graph import graph
from components.hpo import hpo_summary, hpo_worker
from components.ingest import ingest
from components.normalize import normalize
from components.train_fold import train_fold, train_fold_trainjob

STAGES = (
    ingest,
    features,
    normalize,
    graph,
    folds,
    train_fold,
    train_fold_trainjob,
    evaluate,
    evaluate_all,
    promote,
    hpo_worker,
    hpo_summary,
    audit,
)


def load(image: str) -> dict[str, dsl.base_component.BaseComponent]:
    """Every stage as a KFP component running in `image` (referenced by digest or git SHA)."""
    return {f.__name__: dsl.component(f, base_image=image, install_kfp_package=False) for f in STAGES}
