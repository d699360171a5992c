"""Generated networks for scale tests and benchmarks (deterministic given the arguments)."""

from __future__ import annotations

from typing import Any

import numpy as np


def regional_network(n_dcs: int, stores_per_dc: int, seed: int = 0, dense_store_lanes: bool = False) -> dict[str, Any]:
    """A scenario mapping: ``n_dcs`` supplier-fed DCs, each feeding ``stores_per_dc`` stores.

    Stores in the same region have lanes to each other (a ring, or all pairs if ``dense_store_lanes``);
    neighbouring DCs have lanes both ways. Demand means are drawn once from ``seed``.
    """
    rng = np.random.default_rng(seed)
    nodes: list[dict[str, Any]] = []
    lanes: list[dict[str, Any]] = []
    demand: dict[str, Any] = {}
    for d in range(n_dcs):
        dc = f"dc{d}"
        stores = [f"s{d}_{j}" for j in range(stores_per_dc)]
        means = rng.uniform(5, 30, size=stores_per_dc).round(1)
        nodes.append(
            {
                "id": dc,
                "kind": "dc",
                "capacity": 5000,
                "holding_cost": 0.2,
                "source": "supplier",
                "lead_time": 3,
                "initial_stock": float(round(4 * means.sum())),
            }
        )
        for s, m in zip(stores, means, strict=True):
            nodes.append(
                {
                    "id": s,
                    "kind": "store",
                    "capacity": 600,
                    "holding_cost": 0.5,
                    "source": dc,
                    "initial_stock": float(round(3 * m)),
                }
            )
            lanes.append({"from": dc, "to": s, "lead_time": 1, "unit_cost": 0.2, "capacity": 1000})
            demand[s] = {"dist": "poisson", "mean": float(m)}
        pairs = (
            [(a, b) for a in stores for b in stores if a != b]
            if dense_store_lanes
            else [(stores[j], stores[(j + 1) % len(stores)]) for j in range(len(stores))]
            if len(stores) > 1
            else []
        )
        for a, b in pairs:
            lanes.append({"from": a, "to": b, "lead_time": 0, "unit_cost": 0.5, "fixed_cost": 2, "capacity": 100})
            if not dense_store_lanes and len(stores) > 2:
                lanes.append({"from": b, "to": a, "lead_time": 0, "unit_cost": 0.5, "fixed_cost": 2, "capacity": 100})
    for d in range(n_dcs - 1):
        for a, b in ((f"dc{d}", f"dc{d + 1}"), (f"dc{d + 1}", f"dc{d}")):
            lanes.append({"from": a, "to": b, "lead_time": 1, "unit_cost": 0.3, "fixed_cost": 10, "capacity": 2000})
    seen: set[tuple[str, str]] = set()
    unique = []
    for ln in lanes:
        if (ln["from"], ln["to"]) not in seen:
            seen.add((ln["from"], ln["to"]))
            unique.append(ln)
    return {
        "name": f"regional_{n_dcs}x{stores_per_dc}",
        "description": f"{n_dcs} DCs x {stores_per_dc} stores, store lanes in regions, DC lanes between neighbours.",
        "periods": 52,
        "warmup": 4,
        "shortage": "lost_sales",
        "nodes": nodes,
        "lanes": unique,
        "demand": {**demand, "correlation": 0.0},
        "costs": {"shortage_penalty": 8.0},
        "agents": {"reward": "team", "visibility": "neighbours", "action_mode": "quantity"},
    }


def dense_network(n_nodes: int, lead_time: int = 4, seed: int = 0) -> dict[str, Any]:
    """``n_nodes`` supplier-fed nodes (lead time ``lead_time``) with a lane between every pair."""
    rng = np.random.default_rng(seed)
    ids = [f"n{i}" for i in range(n_nodes)]
    means = rng.uniform(5, 30, size=n_nodes).round(1)
    return {
        "name": f"dense_{n_nodes}",
        "description": f"{n_nodes} supplier-fed nodes, lead time {lead_time}, lanes between all pairs.",
        "periods": 52,
        "shortage": "lost_sales",
        "nodes": [
            {
                "id": n,
                "kind": "store",
                "holding_cost": 1.0,
                "lead_time": lead_time,
                "initial_stock": float(round(3 * m)),
            }
            for n, m in zip(ids, means, strict=True)
        ],
        "lanes": [
            {"from": a, "to": b, "lead_time": 1, "unit_cost": 0.5, "capacity": 50} for a in ids for b in ids if a != b
        ],
        "demand": {n: {"dist": "poisson", "mean": float(m)} for n, m in zip(ids, means, strict=True)},
        "costs": {"shortage_penalty": 8.0},
    }
