"""KPIs, each defined once (formulas from ``shared/domain.md``, "KPIs"), computed from the period frame.

Two steps. :func:`aggregate` reduces the period frame (:mod:`invnet.evaluation.frames`) to one row
per episode (network level) or per episode and node (node level) of sums, means and variances over
the evaluated periods (warm-up excluded). Each KPI function then reads those aggregates and is the
only definition of its formula. Every KPI is per episode; :mod:`invnet.evaluation.stats` averages
over episodes with a 95% CI.

Aggregates (``a``) per group, over its evaluated periods ``t = 1..T'``:

- cost terms: mean per period (network: summed over nodes first);
- ``demand``, ``served_now``, ``sales``, ``issued`` (units that left for customers or downstream
  nodes; network: sales only), ``margin``: sums;
- ``on_hand``, ``faced``, ``transfers``, ``shipments``, ``inventory_value``: means per period;
- ``order_var``, ``faced_var``: sample variances over periods of the orders placed and of the
  demand faced (node: external demand + downstream orders; network: supplier orders vs total
  external demand);
- ``stockout_np``, ``ran_out_np``, ``demand_np``: counts of demand-facing node-periods with a stockout,
  ending empty, and in total.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

COST_KPIS = ("total_cost", "holding_cost", "shortage_cost", "order_cost", "transfer_cost")


def _div(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den with NaN where den is zero (the KPI is undefined there)."""
    den = den.astype(float)
    return num.astype(float) / den.where(den.abs() > 1e-12)


def total_cost(a: pd.DataFrame) -> pd.Series:
    """Total cost per period = holding + shortage + ordering + transfer, mean over evaluated periods."""
    return a["holding_cost"] + a["shortage_cost"] + a["order_cost"] + a["transfer_cost"]


def holding_cost(a: pd.DataFrame) -> pd.Series:
    """Holding cost per period = mean_t Σ_n h_n · on-hand_n,t (end of period)."""
    return a["holding_cost"]


def shortage_cost(a: pd.DataFrame) -> pd.Series:
    """Shortage cost per period = mean_t Σ_n p_n · (lost sales, or end-of-period backlog)_n,t."""
    return a["shortage_cost"]


def order_cost(a: pd.DataFrame) -> pd.Series:
    """Ordering cost per period = mean_t Σ_n (fixed · 1[order] + unit · qty + source-lane cost)."""
    return a["order_cost"]


def transfer_cost(a: pd.DataFrame) -> pd.Series:
    """Transfer cost per period = mean_t Σ_lanes (unit cost · units + fixed cost · 1[lane used])."""
    return a["transfer_cost"]


def fill_rate(a: pd.DataFrame) -> pd.Series:
    """Unit fill rate = Σ_t served immediately / Σ_t demanded (NaN for a node without demand)."""
    return _div(a["served_now"], a["demand"])


def cycle_service_level(a: pd.DataFrame) -> pd.Series:
    """Cycle service level = 1 − (node-periods with a stockout / demand-facing node-periods).

    A stockout is a period whose demand was not fully served at once (served_now < demand).
    """
    return 1.0 - _div(a["stockout_np"], a["demand_np"])


def stockout_rate(a: pd.DataFrame) -> pd.Series:
    """Stockout rate = demand-facing node-periods ending with zero on-hand / demand-facing node-periods."""
    return _div(a["ran_out_np"], a["demand_np"])


def days_of_supply(a: pd.DataFrame) -> pd.Series:
    """Days (periods) of supply = mean on-hand / mean demand faced per period.

    Node: demand faced = own demand + downstream orders; network: total on-hand / total external demand.
    """
    return _div(a["on_hand"], a["faced"])


def inventory_turnover(a: pd.DataFrame) -> pd.Series:
    """Inventory turnover over the evaluated horizon = units issued / mean on-hand.

    Units issued: sales (+ shipments to downstream nodes' orders at node level).
    """
    return _div(a["issued"], a["on_hand"])


def transfer_frequency(a: pd.DataFrame) -> pd.Series:
    """Transfer frequency = lane shipments per period (lanes that carried a lateral transfer)."""
    return a["shipments"]


def units_transferred(a: pd.DataFrame) -> pd.Series:
    """Units transferred per period = mean_t Σ lateral transfer units shipped (node: sent by the node)."""
    return a["transfers"]


def bullwhip(a: pd.DataFrame) -> pd.Series:
    """Bullwhip ratio = Var_t(orders placed) / Var_t(demand faced) (Lee, Padmanabhan & Whang 1997).

    Node: its orders vs its external demand + downstream orders; network: supplier orders vs total
    external demand. NaN where the demand faced does not vary.
    """
    return _div(a["order_var"], a["faced_var"])


def gmroi(a: pd.DataFrame) -> pd.Series:
    """GMROI over the evaluated horizon = Σ sales · (price − unit_cost) / mean(on-hand · unit_cost).

    Only where nodes give ``price`` and ``unit_cost``; NaN otherwise (network: nodes that give both).
    """
    return _div(a["margin"], a["inventory_value"])


KPIS: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "total_cost": total_cost,
    "holding_cost": holding_cost,
    "shortage_cost": shortage_cost,
    "order_cost": order_cost,
    "transfer_cost": transfer_cost,
    "fill_rate": fill_rate,
    "cycle_service_level": cycle_service_level,
    "stockout_rate": stockout_rate,
    "days_of_supply": days_of_supply,
    "inventory_turnover": inventory_turnover,
    "transfer_frequency": transfer_frequency,
    "units_transferred": units_transferred,
    "bullwhip": bullwhip,
    "gmroi": gmroi,
}
"""Every KPI, in report order. Higher is better for fill rate, service level, turnover and GMROI."""

LOWER_IS_BETTER = {"total_cost", "holding_cost", "shortage_cost", "order_cost", "transfer_cost", "stockout_rate"}

_COSTS = ["holding_cost", "shortage_cost", "order_cost", "transfer_cost"]


def aggregate(frame: pd.DataFrame, level: str = "network") -> pd.DataFrame:
    """Per-episode (``network``) or per-episode-and-node (``node``) aggregates of the period frame."""
    if level not in ("network", "node"):
        raise ValueError(f"level: must be 'network' or 'node', got {level!r}")
    f = frame.copy()
    dn = f["external_demand"].astype(bool)
    f["stockout_np"] = (f["stockout"].astype(bool) & dn).astype(float)
    f["ran_out_np"] = (f["ran_out"].astype(bool) & dn).astype(float)
    f["demand_np"] = dn.astype(float)
    keys = ["policy", "episode"] + (["node"] if level == "node" else [])
    if level == "network":
        # one row per period first: network totals (value columns only where the node gives prices)
        per = f.groupby(["policy", "episode", "period"], observed=True, sort=True).agg(
            **{c: (c, "sum") for c in _COSTS},
            demand=("demand", "sum"),
            served_now=("served_now", "sum"),
            sales=("sales", "sum"),
            on_hand=("on_hand", "sum"),
            transfers=("transfers_out", "sum"),
            shipments=("transfer_shipments", "sum"),
            orders=("supplier_orders", "sum"),
            margin=("margin", "sum"),
            inventory_value=("inventory_value", "sum"),
            priced=("margin", "count"),
            stockout_np=("stockout_np", "sum"),
            ran_out_np=("ran_out_np", "sum"),
            demand_np=("demand_np", "sum"),
        )
        per["issued"] = per["sales"]
        per["faced"] = per["demand"]
    else:
        per = f.rename(
            columns={"transfers_out": "transfers", "transfer_shipments": "shipments", "ordered": "orders"}
        ).set_index(["policy", "episode", "period", "node"])
        per["issued"] = per["sales"] + per["shipped_down"]
        per["priced"] = per["margin"].notna().astype(float)
    g = per.groupby(level=keys, observed=True, sort=True)
    a = g.agg(
        **{c: (c, "mean") for c in _COSTS},
        demand=("demand", "sum"),
        served_now=("served_now", "sum"),
        issued=("issued", "sum"),
        on_hand=("on_hand", "mean"),
        faced=("faced", "mean"),
        transfers=("transfers", "mean"),
        shipments=("shipments", "mean"),
        margin=("margin", "sum"),
        inventory_value=("inventory_value", "mean"),
        priced=("priced", "sum"),
        order_var=("orders", "var"),
        faced_var=("faced", "var"),
        stockout_np=("stockout_np", "sum"),
        ran_out_np=("ran_out_np", "sum"),
        demand_np=("demand_np", "sum"),
    )
    unpriced = a.pop("priced") == 0
    a.loc[unpriced, ["margin", "inventory_value"]] = np.nan
    return a


def compute(a: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """KPI columns from aggregates (all of :data:`KPIS` unless ``names``), index kept."""
    names = list(KPIS) if names is None else names
    unknown = [n for n in names if n not in KPIS]
    if unknown:
        raise ValueError(f"kpis: unknown KPI(s) {unknown} (known: {', '.join(KPIS)})")
    return pd.DataFrame({n: KPIS[n](a) for n in names}, index=a.index)


def episode_kpis(frame: pd.DataFrame) -> pd.DataFrame:
    """Network KPIs, one row per policy x episode (columns ``policy``, ``episode``, KPIs)."""
    out = compute(aggregate(frame, "network")).reset_index()
    out.attrs = dict(frame.attrs)
    return out


def node_kpis(frame: pd.DataFrame) -> pd.DataFrame:
    """Node KPIs, one row per policy x episode x node (columns ``policy``, ``episode``, ``node``, KPIs)."""
    out = compute(aggregate(frame, "node")).reset_index()
    out.attrs = dict(frame.attrs)
    return out
