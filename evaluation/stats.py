"""Statistics over episodes: means with 95% CIs, paired differences, share of the gap to the bound closed.

All CIs are Student-t intervals over episodes from :func:`invnet.envs.rollout.mean_ci95` (one place).
Paired differences are per-episode differences on common random numbers (same demand paths), so
two identical policies differ by exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from invnet.envs.rollout import mean_ci95

KEY_COLUMNS = ("policy", "episode", "node", "scenario")


def kpi_columns(kpi_frame: pd.DataFrame) -> list[str]:
    """The KPI columns of an episode/node KPI frame (everything but the keys)."""
    return [c for c in kpi_frame.columns if c not in KEY_COLUMNS]


def mean_ci(x: Sequence[float] | np.ndarray | pd.Series) -> tuple[float, float, int]:
    """(mean, 95% CI half-width, n) over the finite values of ``x``; NaNs where none is finite."""
    v = np.asarray(x, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    m, h = mean_ci95(v)
    return m, h, int(v.size)


def summarize(
    kpi_frame: pd.DataFrame, by: Sequence[str] = ("policy",), kpis: Sequence[str] | None = None
) -> pd.DataFrame:
    """Long frame: one row per group x KPI with ``mean``, ``ci95`` (half-width) and ``n`` episodes."""
    kpis = kpi_columns(kpi_frame) if kpis is None else list(kpis)
    rows = []
    for key, g in kpi_frame.groupby(list(by), observed=True, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for k in kpis:
            m, h, n = mean_ci(g[k])
            rows.append({**dict(zip(by, key, strict=True)), "kpi": k, "mean": m, "ci95": h, "n": n})
    return pd.DataFrame(rows)


def paired_differences(
    kpi_frame: pd.DataFrame,
    reference: str,
    kpis: Sequence[str] | None = None,
    on: Sequence[str] = ("episode",),
) -> pd.DataFrame:
    """Per-episode differences ``policy − reference`` (matched on ``on``), mean with 95% CI.

    Returns one row per policy x KPI (``diff``, ``ci95``, ``n``, ``rel`` = diff / reference mean).
    Raises ValueError naming the reference when it is not in the frame.
    """
    names = [str(p) for p in pd.unique(kpi_frame["policy"].astype(str))]
    if reference not in names:
        raise ValueError(f"reference: unknown policy {reference!r} (evaluated: {', '.join(names)})")
    kpis = kpi_columns(kpi_frame) if kpis is None else list(kpis)
    pol = kpi_frame["policy"].astype(str)
    ref = kpi_frame[pol == reference].set_index(list(on))[kpis]
    rows = []
    for name in names:
        cur = kpi_frame[pol == name].set_index(list(on))[kpis]
        joined = cur.join(ref, how="inner", rsuffix="__ref")
        for k in kpis:
            d = joined[k].to_numpy(dtype=float) - joined[f"{k}__ref"].to_numpy(dtype=float)
            m, h, n = mean_ci(d)
            rm, _, _ = mean_ci(joined[f"{k}__ref"])
            rel = m / rm if np.isfinite(rm) and abs(rm) > 1e-12 else math.nan
            rows.append({"policy": name, "kpi": k, "diff": m, "ci95": h, "n": n, "rel": rel})
    return pd.DataFrame(rows)


def gap_closed(cost_baseline: float, cost_policy: float, cost_bound: float) -> float:
    """Share of the baseline-to-bound gap a policy closes (domain.md, "Hindsight bound").

    ``(cost_baseline − cost_policy) / (cost_baseline − cost_bound)``: 0 = no better than the
    baseline, 1 = reaches the perfect-information bound; NaN when the gap is (numerically) zero.
    """
    gap = cost_baseline - cost_bound
    if not np.isfinite(gap) or abs(gap) < 1e-12:
        return math.nan
    return float((cost_baseline - cost_policy) / gap)
