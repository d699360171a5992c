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
    ref = kpi_frame[pol == reference].set_index(list(on))[kpis].add_suffix("__ref")
    rows = []
    for name in names:
        cur = kpi_frame[pol == name].set_index(list(on))[kpis]
        joined = cur.join(ref, how="inner")
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


def _num(x: float) -> float | None:
    """JSON-safe number: None for NaN/inf."""
    x = float(x)
    return x if math.isfinite(x) else None


def results(
    episode_kpis: pd.DataFrame,
    reference: str | None = None,
    bound: Sequence[float] | np.ndarray | None = None,
    node_kpis: pd.DataFrame | None = None,
) -> dict:
    """A JSON-ready summary: ``policies`` -> name -> KPI -> {mean, ci95} (+ ``vs_reference``, ``gap_closed``).

    ``reference`` defaults to the first policy. ``bound`` is the hindsight bound's per-episode cost
    per period on the same demand paths (episode order); it adds a ``bound`` entry and each policy's
    share of the reference-to-bound gap closed. NaN (undefined KPIs) becomes null.
    """
    names = [str(p) for p in pd.unique(episode_kpis["policy"].astype(str))]
    reference = names[0] if reference is None else reference
    if reference not in names:
        raise ValueError(f"reference: unknown policy {reference!r} (evaluated: {', '.join(names)})")
    kpis = kpi_columns(episode_kpis)
    summ = summarize(episode_kpis, kpis=kpis)
    diffs = paired_differences(episode_kpis, reference, kpis=kpis)
    attrs = dict(episode_kpis.attrs)
    out: dict = {
        "scenario": attrs.get("scenario"),
        "episodes": attrs.get("episodes"),
        "seed": attrs.get("seed"),
        "periods": attrs.get("periods"),
        "warmup": attrs.get("warmup"),
        "cost_unit": "mean cost per period over the evaluated (post-warm-up) periods",
        "reference": reference,
        "policies": {},
    }
    for name in names:
        s = summ[summ["policy"] == name]
        d = diffs[diffs["policy"] == name]
        entry: dict = {r.kpi: {"mean": _num(r.mean), "ci95": _num(r.ci95)} for r in s.itertuples()}
        if name != reference:
            entry["vs_reference"] = {
                r.kpi: {"diff": _num(r.diff), "ci95": _num(r.ci95), "rel": _num(r.rel)} for r in d.itertuples()
            }
        out["policies"][name] = entry
    if bound is not None:
        b = np.asarray(bound, dtype=float)
        bm, bh, _ = mean_ci(b)
        ref_cost = episode_kpis.loc[episode_kpis["policy"].astype(str) == reference].sort_values("episode")
        ref_cost = ref_cost["total_cost"].to_numpy(dtype=float)
        entry = {"total_cost": {"mean": _num(bm), "ci95": _num(bh)}}
        if ref_cost.shape == b.shape:
            dm, dh, _ = mean_ci(b - ref_cost)
            entry["vs_reference"] = {"total_cost": {"diff": _num(dm), "ci95": _num(dh)}}
        out["bound"] = entry
        rm = out["policies"][reference]["total_cost"]["mean"]
        for name in names:
            pm = out["policies"][name]["total_cost"]["mean"]
            out["policies"][name]["gap_closed"] = _num(gap_closed(rm, pm, bm))
    if node_kpis is not None:
        ns = summarize(node_kpis, by=("policy", "node"), kpis=kpi_columns(node_kpis))
        nodes: dict = {}
        for r in ns.itertuples():
            nodes.setdefault(str(r.policy), {}).setdefault(str(r.node), {})[r.kpi] = {
                "mean": _num(r.mean),
                "ci95": _num(r.ci95),
            }
        out["nodes"] = nodes
    if "policies" in attrs:
        out["policy_params"] = attrs["policies"]
    return out
