"""train-fold and what it is made of: fold.py (the stage), loop.py (the ATFT fit), checkpoint.py, days.py (one-day
batches on device), predictions.py (prediction tables, validation RankIC), baselines.py, hpo.py."""

from kabuflow.train.fold import MODELS, train_fold

__all__ = ["MODELS", "train_fold"]
