"""The CUDA checks and GPU benchmarks, in one short run for a lent GPU machine (no registry there).

    python scripts/gpu_check.py OUT_DIR

1. correctness: the same weights and day on CPU and CUDA, float32 and under bf16 autocast
   (relative error of the quantiles), and every output finite;
2. a whole fold fit on CUDA (panel on the GPU, day batches sliced there, bf16, checkpoint per epoch)
   twice with the same seed: histories finite, final weights compared;
3. throughput of the `a100` profile (4,000 stocks a day) in each variant of `VARIANTS` (eager, days
   stacked per step, torch.compile, CUDA graphs on the padded temporal encoder), with the mean NVML GPU
   utilisation over the timed epoch and the ratio to eager, and of `local` on one CPU thread beside it.

Writes OUT_DIR/gpu_check.json and prints a short table last. The figures go into the README by hand.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kabuflow.benchmarks.train import N_FEATURES, measure, random_market
from kabuflow.config import load
from kabuflow.model.atft_gat_fan import ATFTGATFAN, n_params
from kabuflow.train.days import DayData, deterministic
from kabuflow.train.loop import fit_atft


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def correctness() -> dict:
    """CPU float32 is the reference; CUDA float32 and CUDA bf16 against it on fresh random data."""
    cfg = load("a100")
    panel, graph = random_market(cfg.model.lookback + 2, 1500, N_FEATURES, seed=123)
    torch.manual_seed(1)
    model = ATFTGATFAN(cfg.model, N_FEATURES, 4).eval()
    t = cfg.model.lookback
    out = {}
    with torch.no_grad():
        cpu = DayData(panel, graph, t, torch.device("cpu"))
        b = cpu.day(t, cfg.model.lookback, cpu.stocks(t))
        ref = model(b.x, b.edge_index, b.edge_attr)[0]
        gpu_model = model.to("cuda")
        gpu = DayData(panel, graph, t, torch.device("cuda"))
        g = gpu.day(t, cfg.model.lookback, gpu.stocks(t))
        q32 = gpu_model(g.x, g.edge_index, g.edge_attr)[0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            q16 = gpu_model(g.x, g.edge_index, g.edge_attr)[0]
    out["fp32_rel_err"] = _rel(q32.cpu(), ref)
    out["bf16_rel_err"] = _rel(q16.float().cpu(), ref)
    out["all_finite"] = bool(torch.isfinite(q32).all() and torch.isfinite(q16).all())
    return out


def fold_fit() -> dict:
    """A short fit of the a100 model on CUDA, twice from the same seed."""
    cfg = load("a100", ["train.epochs=3", "train.patience=0", "train.warmup_steps=20", "train.compile=false"])
    t_total = cfg.model.lookback + 200
    panel, graph = random_market(t_total, 2000, N_FEATURES, seed=7)
    lb = cfg.model.lookback
    days = {"train": np.arange(lb, lb + 120), "val": np.arange(lb + 150, lb + 180)}
    runs = []
    for _ in range(2):
        data = DayData(panel, graph, t_total - 1, torch.device("cuda"))
        with tempfile.TemporaryDirectory() as tmp, deterministic(data.device):  # as train-fold runs it
            t0 = time.perf_counter()
            res = fit_atft(cfg, data, days, Path(tmp) / "ckpt.pt")
            wall = time.perf_counter() - t0
            ckpt_bytes = (Path(tmp) / "ckpt.pt").stat().st_size
        runs.append((res, wall, ckpt_bytes))
    w0 = torch.cat([p.detach().flatten().float() for p in runs[0][0].model.parameters()])
    w1 = torch.cat([p.detach().flatten().float() for p in runs[1][0].model.parameters()])
    hist = runs[0][0].history
    return {
        "epochs": len(hist),
        "losses": [round(h["train_loss"], 5) for h in hist],
        "finite": all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_rank_ic"]) for h in hist),
        "seconds": [round(r[1], 1) for r in runs],
        "checkpoint_bytes": runs[0][2],
        "rerun_max_abs_weight_diff": float((w0 - w1).abs().max()),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
    }


# Today's loop first, then each change of issue #19 alone and together: one day per step with the
# host reading the finite-loss flag once an epoch (the loop's default now), four days stacked into one
# forward (fewer, larger kernels; a different optimisation path, so a throughput figure only), and the
# temporal encoder compiled with CUDA graphs on stocks padded to a multiple of 256.
VARIANTS = {
    "a100_eager": ["train.compile=false"],
    "a100_stack4": ["train.compile=false", "train.days_per_step=4", "train.stack_days=true"],
    "a100_compile": ["train.compile=true"],
    "a100_cudagraphs": ["train.compile=true", "train.compile_mode=reduce-overhead", "train.pad_stocks=256"],
    "a100_cudagraphs_stack4": [
        "train.compile=true",
        "train.compile_mode=reduce-overhead",
        "train.pad_stocks=256",
        "train.days_per_step=4",
        "train.stack_days=true",
    ],
}


def throughput() -> dict:
    """Stock-days per second and mean NVML busy of a100 on CUDA for each variant, side by side, and of
    local on one CPU thread."""
    out = {"params_local": n_params(ATFTGATFAN(load("local").model, N_FEATURES, 4))}
    out["params_a100"] = n_params(ATFTGATFAN(load("a100").model, N_FEATURES, 4))
    for name, sets in VARIANTS.items():
        t0 = time.perf_counter()
        try:
            out[name] = measure(load("a100", sets), 4000, 100, torch.device("cuda"))
        except Exception as e:  # one variant failing (a compile error) must not hide the others
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        out[name]["seconds_incl_compile"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(out[name], default=str), flush=True)
    base = out["a100_eager"].get("train_stock_days_per_s")
    for name in VARIANTS:
        got = out[name].get("train_stock_days_per_s")
        busy = out[name].get("gpu_utilization_pct")
        ratio = f"{got / base:5.2f}x" if got and base else "    -"
        print(f"{name:<26}{got or '-':>10} stock-days/s {ratio}  busy {busy if busy is not None else '-'} %")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out["local_cpu_1thread"] = measure(load("local", ["train.threads=1"]), 400, 40, torch.device("cpu"))
    torch.set_num_threads(threads)
    return out


def main() -> None:
    """Each check in turn; a failing one is recorded and the rest still run."""
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    assert torch.cuda.is_available(), "no CUDA device visible"
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name, fn in (("correctness", correctness), ("fold_fit", fold_fit), ("throughput", throughput)):
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:  # one failed check must not hide the others' figures
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        res[name]["check_seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(res[name], default=str), flush=True)
        (out_dir / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str))
    print("\n== summary ==")
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
