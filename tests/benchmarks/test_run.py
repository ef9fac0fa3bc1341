"""benchmarks.run: the per-stage table groups train-fold runs by model and sums wall and CPU."""

from kabuflow.benchmarks.run import per_stage


def test_per_stage_groups_train_fold_by_model():
    line = lambda stage, label, s, c, rss: {  # noqa: E731
        "stage": stage,
        "label": label,
        "seconds": s,
        "cpu_seconds": c,
        "peak_rss_gb": rss,
    }
    rows = per_stage(
        [
            line("graph", "", 10.0, 19.0, 1.5),
            line("train-fold", "atft/0", 100.0, 90.0, 2.0),
            line("train-fold", "ridge/0", 5.0, 4.0, 1.0),
            line("train-fold", "atft/1", 120.0, 110.5, 2.5),
        ]
    )
    assert rows == [
        {"stage": "graph", "runs": 1, "wall_s": 10.0, "cpu_s": 19.0, "peak_rss_gb": 1.5},
        {"stage": "train-fold atft", "runs": 2, "wall_s": 220.0, "cpu_s": 200.5, "peak_rss_gb": 2.5},
        {"stage": "train-fold ridge", "runs": 1, "wall_s": 5.0, "cpu_s": 4.0, "peak_rss_gb": 1.0},
    ]
