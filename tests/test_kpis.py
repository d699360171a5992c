"""KPI formulas on a hand-computed period frame (2 nodes x 4 periods, one policy and episode)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from invnet.evaluation import kpis

# store: external demand, ordered from the dc; dc: supplier-fed, no demand of its own
STORE = {
    "demand": [10, 20, 10, 20],
    "served_now": [10, 15, 10, 20],
    "on_hand": [5, 0, 10, 5],
    "ordered": [10, 30, 20, 0],
    "holding_cost": [5, 0, 10, 5],
    "shortage_cost": [0, 10, 0, 0],
    "order_cost": [1, 1, 1, 1],
    "transfer_cost": [0, 3, 0, 0],
    "transfers_out": [0, 5, 0, 0],
    "transfer_shipments": [0, 1, 0, 0],
    "shipped_down": [0, 0, 0, 0],
    "supplier_orders": [0, 0, 0, 0],
    "external_demand": [True] * 4,
}
DC = {
    "demand": [0, 0, 0, 0],
    "served_now": [0, 0, 0, 0],
    "on_hand": [100, 80, 60, 40],
    "ordered": [0, 0, 50, 0],
    "holding_cost": [20, 16, 12, 8],
    "shortage_cost": [0, 0, 0, 0],
    "order_cost": [0, 0, 2, 0],
    "transfer_cost": [0, 0, 0, 0],
    "transfers_out": [0, 0, 0, 0],
    "transfer_shipments": [0, 0, 0, 0],
    "shipped_down": [10, 30, 20, 0],
    "supplier_orders": [0, 0, 50, 0],
    "external_demand": [False] * 4,
}
PRICE = {"store": (3.0, 1.0), "dc": (math.nan, math.nan)}


def hand_frame() -> pd.DataFrame:
    rows = []
    for node, cols, faced in (("store", STORE, STORE["demand"]), ("dc", DC, STORE["ordered"])):
        price, ucost = PRICE[node]
        for t in range(4):
            r = {k: v[t] for k, v in cols.items()}
            r.update(policy="p", episode=0, period=t + 2, node=node)
            r["sales"] = r["served_now"]
            r["faced"] = faced[t]
            r["cost"] = r["holding_cost"] + r["shortage_cost"] + r["order_cost"] + r["transfer_cost"]
            r["stockout"] = r["demand"] > r["served_now"]
            r["ran_out"] = r["on_hand"] == 0
            r["margin"] = r["sales"] * (price - ucost)
            r["inventory_value"] = r["on_hand"] * ucost
            rows.append(r)
    f = pd.DataFrame(rows)
    f["node"] = pd.Categorical(f["node"], categories=["dc", "store"])
    f["policy"] = pd.Categorical(f["policy"])
    return f


@pytest.fixture(scope="module")
def network() -> pd.Series:
    ep = kpis.episode_kpis(hand_frame())
    assert len(ep) == 1
    return ep.iloc[0]


@pytest.fixture(scope="module")
def nodes() -> pd.DataFrame:
    return kpis.node_kpis(hand_frame()).set_index("node")


def test_costs(network: pd.Series, nodes: pd.DataFrame) -> None:
    # network: mean over 4 periods of the summed node costs
    assert network["holding_cost"] == pytest.approx((20 + 56) / 4)
    assert network["shortage_cost"] == pytest.approx(10 / 4)
    assert network["order_cost"] == pytest.approx(6 / 4)
    assert network["transfer_cost"] == pytest.approx(3 / 4)
    assert network["total_cost"] == pytest.approx((20 + 56 + 10 + 6 + 3) / 4)
    assert nodes.loc["store", "total_cost"] == pytest.approx((20 + 10 + 4 + 3) / 4)
    assert nodes.loc["dc", "total_cost"] == pytest.approx((56 + 2) / 4)


def test_service(network: pd.Series, nodes: pd.DataFrame) -> None:
    assert network["fill_rate"] == pytest.approx(55 / 60)
    assert nodes.loc["store", "fill_rate"] == pytest.approx(55 / 60)
    assert math.isnan(nodes.loc["dc", "fill_rate"])  # no demand of its own
    # one of the store's 4 periods had unmet demand; the dc is not a demand-facing node
    assert network["cycle_service_level"] == pytest.approx(0.75)
    assert nodes.loc["store", "cycle_service_level"] == pytest.approx(0.75)
    assert math.isnan(nodes.loc["dc", "cycle_service_level"])
    # the store ended one period empty
    assert network["stockout_rate"] == pytest.approx(0.25)


def test_inventory(network: pd.Series, nodes: pd.DataFrame) -> None:
    # days of supply: mean on-hand / mean demand faced
    assert nodes.loc["store", "days_of_supply"] == pytest.approx(5 / 15)
    assert nodes.loc["dc", "days_of_supply"] == pytest.approx(70 / 15)  # faces the store's orders (mean 15)
    assert network["days_of_supply"] == pytest.approx(75 / 15)
    # turnover: units issued / mean on-hand
    assert nodes.loc["store", "inventory_turnover"] == pytest.approx(55 / 5)
    assert nodes.loc["dc", "inventory_turnover"] == pytest.approx(60 / 70)
    assert network["inventory_turnover"] == pytest.approx(55 / 75)


def test_transfers(network: pd.Series, nodes: pd.DataFrame) -> None:
    assert network["transfer_frequency"] == pytest.approx(1 / 4)
    assert network["units_transferred"] == pytest.approx(5 / 4)
    assert nodes.loc["store", "units_transferred"] == pytest.approx(5 / 4)
    assert nodes.loc["dc", "transfer_frequency"] == 0.0


def test_bullwhip(network: pd.Series, nodes: pd.DataFrame) -> None:
    var = lambda x: float(np.var(x, ddof=1))  # noqa: E731
    assert nodes.loc["store", "bullwhip"] == pytest.approx(var([10, 30, 20, 0]) / var([10, 20, 10, 20]))  # = 5
    assert nodes.loc["store", "bullwhip"] == pytest.approx(5.0)
    # the dc has no demand of its own: it faces the store's orders
    assert nodes.loc["dc", "bullwhip"] == pytest.approx(var([0, 0, 50, 0]) / var([10, 30, 20, 0]))
    # network: supplier orders vs external demand
    assert network["bullwhip"] == pytest.approx(var([0, 0, 50, 0]) / var([10, 20, 10, 20]))


def test_gmroi(network: pd.Series, nodes: pd.DataFrame) -> None:
    # store: margin (3 - 1) x 55 sold over mean inventory value 5 x 1
    assert nodes.loc["store", "gmroi"] == pytest.approx(110 / 5)
    assert math.isnan(nodes.loc["dc", "gmroi"])  # no price given
    assert network["gmroi"] == pytest.approx(110 / 5)  # only nodes that give both


def test_gmroi_absent_without_prices() -> None:
    f = hand_frame()
    f["margin"] = np.nan
    f["inventory_value"] = np.nan
    assert kpis.episode_kpis(f)["gmroi"].isna().all()


def test_every_kpi_documents_its_formula() -> None:
    for name, fn in kpis.KPIS.items():
        assert fn.__doc__ and "=" in fn.__doc__, name


def test_unknown_kpi_and_level() -> None:
    a = kpis.aggregate(hand_frame())
    with pytest.raises(ValueError, match="unknown KPI"):
        kpis.compute(a, ["nope"])
    with pytest.raises(ValueError, match="level"):
        kpis.aggregate(hand_frame(), "episode")
