"""KFP component: audit."""

from kfp.dsl import HTML, Dataset, Metrics, Output


def audit(config: str, result: Output[Dataset], metrics: Output[Metrics], report: Output[HTML]) -> bool:
    """The look-ahead audit (kabuflow.audit): values compared and moved per stage and cut; True = passed."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from kabuflow.audit import audit as stage
    from kabuflow.config import from_dict

    # The stage outputs (a full run's worth) stay on the pod's disk: only the verdict is an artifact.
    with tempfile.TemporaryDirectory(prefix="kabuflow-audit-") as work:
        out = stage(from_dict(json.loads(config)), result.path, work)
    shutil.copyfile(Path(result.path) / "audit.html", report.path)
    for s in out["stages"]:
        key = f"{s['stage']}_{s['cut']}"
        metrics.log_metric(f"{key}_compared", float(s["compared"]))
        metrics.log_metric(f"{key}_moved", float(s["moved"]))
    metrics.log_metric("lookahead_warnings", float(len(out.get("lookahead", {}).get("warnings", []))))
    metrics.log_metric("seconds", float(out["cost"]["seconds"]))
    result.metadata.update({"passed": out["passed"], "cuts": out["cuts"]})
    return bool(out["passed"])
