"""Report figures as base64 PNG (matplotlib's object API on Agg: no pyplot state, no display needed)."""

from __future__ import annotations

import base64
import io

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kabuflow.config import HORIZONS
from kabuflow.evaluate.stitch import ORACLE

ROLLING_DAYS = 20
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def colours(models: list[str]) -> dict[str, str]:
    """One fixed colour per model across every figure; the oracle is always black."""
    others = [m for m in models if m != ORACLE]
    out = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(others)}
    out[ORACLE] = "#000000"
    return out


def to_png(fig: Figure) -> str:
    """Render a figure to a base64 PNG string for an <img src="data:image/png;base64,...">."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(title: str) -> tuple[Figure, list]:
    fig = Figure(figsize=(13, 7.5), layout="constrained")
    axes = list(fig.subplots(2, 2).ravel())
    fig.suptitle(title, fontsize=12)
    return fig, axes


def cumulative_pnl(pnl: pl.DataFrame, models: list[str]) -> str:
    """Cumulative log return Σ log(1 + r) per horizon (additive, so a strong model does not flatten the
    others): net solid, gross dashed, one colour per model."""
    fig, axes = _grid("Cumulative long–short log return (top − bottom quantile): net solid, gross dashed")
    col = colours(models)
    for ax, h in zip(axes, HORIZONS, strict=True):
        for m in models:
            part = pnl.filter((pl.col("model") == m) & (pl.col("horizon") == h)).sort("date")
            if part.height == 0:
                continue
            dates = part["date"].to_list()
            ax.plot(dates, np.cumsum(np.log1p(part["net"].to_numpy())), color=col[m], lw=1.6, label=m)
            ax.plot(dates, np.cumsum(np.log1p(part["gross"].to_numpy())), color=col[m], lw=0.9, ls="--")
        ax.axhline(0, color="#888888", lw=0.6)
        ax.set_title(f"{h}-day horizon", fontsize=10)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8, loc="upper left")
    return to_png(fig)


def rolling_rank_ic(daily: pl.DataFrame, models: list[str], window: int = ROLLING_DAYS) -> str:
    """Daily RankIC of the first model as faint points, and every model's trailing mean over `window` days."""
    fig, axes = _grid(f"RankIC over time: {window}-day rolling mean (points: daily RankIC of {models[0]})")
    col = colours(models)
    for ax, h in zip(axes, HORIZONS, strict=True):
        for i, m in enumerate(models):
            part = daily.filter((pl.col("model") == m) & (pl.col("horizon") == h)).sort("date")
            if part.height == 0:
                continue
            x, y = part["date"].to_list(), part["rank_ic"].to_numpy()
            if i == 0:
                ax.scatter(x, y, s=3, color=col[m], alpha=0.25)
            w = min(window, y.size)
            roll = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(x[w - 1 :], roll, color=col[m], lw=1.4, label=m)
        ax.axhline(0, color="#888888", lw=0.6)
        ax.set_title(f"{h}-day horizon", fontsize=10)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8, loc="upper left")
    return to_png(fig)


def decile_bars(dec: pl.DataFrame, models: list[str]) -> str:
    """Mean realised label (bp) per score decile, grouped by model, one panel per horizon."""
    fig, axes = _grid("Mean realised return by score decile (1 = lowest score), basis points")
    col = colours(models)
    width = 0.8 / max(1, len(models))
    for ax, h in zip(axes, HORIZONS, strict=True):
        for i, m in enumerate(models):
            part = dec.filter((pl.col("model") == m) & (pl.col("horizon") == h)).sort("bucket")
            if part.height == 0:
                continue
            x = part["bucket"].to_numpy() + 1 + (i - (len(models) - 1) / 2) * width
            ax.bar(x, part["mean_return"].to_numpy() * 1e4, width=width, color=col[m], label=m)
        ax.axhline(0, color="#888888", lw=0.6)
        ax.set_xticks(range(1, 11))
        ax.set_title(f"{h}-day horizon", fontsize=10)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8, loc="upper left")
    return to_png(fig)


def vsn_bars(weights: dict[str, float], top: int = 30) -> str:
    """The largest mean variable-selection weights, largest on top."""
    items = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig = Figure(figsize=(9, 0.28 * len(items) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color=PALETTE[0])
    ax.set_xlabel("mean variable-selection weight (over folds)", fontsize=9)
    ax.tick_params(labelsize=8)
    return to_png(fig)
