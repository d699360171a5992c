"""What the server does, without HTTP: load a policy for a network, turn planners' states into core
:class:`~invnet.envs.core.State` batches, ask the policy, and make its transfers feasible.

Feasibility is not re-implemented here: the policy's action is applied to the planner's state by the
simulator core's own :func:`~invnet.envs.core.step` with zero demand, so disruptions, lane capacity,
storage capacity and proportional rationing of the sender's on-hand follow exactly the core's rules
(event order step 3 in ``envs/core.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from invnet.agents.base import Policy
from invnet.envs.core import Action, Exogenous, State, observed_state, step
from invnet.envs.network import Network
from invnet.serving.schemas import RecommendationRequest

REFERENCE_POLICY = "base_stock"


class RequestError(ValueError):
    """A request that does not fit the loaded network; ``problems`` are (location, message) pairs."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))


class PolicyOutputError(RuntimeError):
    """The policy returned an action that is not a valid set of quantities (a server-side fault)."""


def reference_policy(net: Network) -> Policy:
    """The base-stock baseline when registered (``invnet.agents.baselines``), else :class:`OrderUpTo`."""
    from invnet.agents.registry import make_policy

    try:
        return make_policy(REFERENCE_POLICY, net)
    except ValueError:
        from invnet.agents.simple import OrderUpTo

        return OrderUpTo(net)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray | np.generic):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x is None or isinstance(x, bool | int | float | str):
        return x
    return str(x)


def bundle_metadata(policy: Policy) -> dict[str, Any]:
    """Metadata a loaded bundle carries (training scenario, run id, evaluation figures), if any."""
    for attr in ("metadata", "bundle_metadata", "meta"):
        m = getattr(policy, attr, None)
        if isinstance(m, dict):
            return _jsonable(m)
    return {}


def policy_version(policy: Policy, metadata: dict[str, Any]) -> str:
    """12 hex digits identifying exactly what is served: a hash of the bundle's files for a bundle
    (``metadata["bundle"]``), else of the policy's name and parameters (baselines)."""
    from pathlib import Path

    h = hashlib.sha256()
    bundle = metadata.get("bundle")
    if isinstance(bundle, str) and Path(bundle).is_dir():
        for f in sorted(Path(bundle).iterdir()):
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes())
    else:
        h.update(json.dumps({"name": policy.name, "params": _jsonable(policy.params())}, sort_keys=True).encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True, eq=False)
class LoadedPolicy:
    """A policy ready to serve one network, with everything requests need precomputed."""

    spec: str
    policy: Policy
    reference: Policy
    net: Network
    params: dict[str, Any]
    metadata: dict[str, Any]
    version: str
    loaded_at: str
    history: int  # H: demand periods a state carries
    node_index: dict[str, int] = field(repr=False)
    sku_index: dict[str, int] = field(repr=False)
    downstream_demand: np.ndarray = field(repr=False)  # [N, K] mean demand of the nodes a node supplies

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def trained_on(self) -> str | None:
        for key in ("scenario", "scenario_name", "trained_on"):
            v = self.metadata.get(key)
            if isinstance(v, str):
                return v
            if isinstance(v, dict) and isinstance(v.get("name"), str):
                return v["name"]
        return None

    def network_info(self) -> dict[str, Any]:
        net = self.net
        return {
            "nodes": list(net.node_ids),
            "skus": list(net.skus),
            "lanes": [
                {"from": net.node_ids[f], "to": net.node_ids[t], "lead_time": int(lt), "capacity": _jsonable(float(c))}
                for f, t, lt, c in zip(net.lane_from, net.lane_to, net.lane_lead, net.lane_cap, strict=True)
            ],
            "pipeline_length": net.pipeline_len,
            "demand_history": self.history,
            "periods": net.periods,
            "shortage": "backorder" if net.backorder else "lost_sales",
        }


def load_policy(net: Network, spec: str, params: dict[str, Any] | None = None) -> LoadedPolicy:
    """Resolve SPEC for ``net`` (registry name, bundle path or MLflow URI) and precompute lookups.

    Raises ValueError / FileNotFoundError naming the problem (unknown name, missing path, a bundle
    trained for another network).
    """
    from invnet.agents.registry import resolve_policy

    return wrap_policy(resolve_policy(spec, net, **(params or {})), spec)


def wrap_policy(policy: Policy, spec: str) -> LoadedPolicy:
    """A policy object (already built for its network) ready to serve; ``spec`` is how it was named."""
    net = policy.net
    meta = bundle_metadata(policy)
    own = net.mean_demand.mean(axis=0)  # [N, K]
    return LoadedPolicy(
        spec=spec,
        policy=policy,
        reference=reference_policy(net),
        net=net,
        params=_jsonable(policy.params()),
        metadata=meta,
        version=policy_version(policy, meta),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        history=net.scenario.agents.demand_history,
        node_index={n: i for i, n in enumerate(net.node_ids)},
        sku_index={k: i for i, k in enumerate(net.skus)},
        downstream_demand=np.maximum(net.throughput - own, 0.0),
    )


def build_state(
    lp: LoadedPolicy, requests: list[RecommendationRequest], locs: list[tuple[str | int, ...]] | None = None
) -> tuple[State, np.ndarray]:
    """A batch ``[B = len(requests)]`` core State and the demand rate per period ``[B, N, K]``.

    All requests must share ``t`` (a core State has one period; :func:`group_by_period` splits a
    batch); every node and SKU must appear exactly once. ``locs[b]`` prefixes error locations of
    request b (default ``("body",)``). Raises :class:`RequestError` listing every problem.
    """
    net = lp.net
    B, N, K, P, H = len(requests), net.n_nodes, net.n_skus, net.pipeline_len, lp.history
    on_hand = np.zeros((B, N, K))
    backlog = np.zeros((B, N, K))
    pipeline = np.zeros((B, N, K, P))
    hist = np.empty((B, N, K, H))
    rate = np.empty((B, N, K))
    problems: list[tuple[tuple[str | int, ...], str]] = []
    t = requests[0].t
    for b, req in enumerate(requests):
        rloc = locs[b] if locs is not None else ("body",)
        if req.t != t:
            raise ValueError("build_state: all requests must share t (use group_by_period)")
        if req.t >= net.periods:
            problems.append(((*rloc, "t"), f"must be < {net.periods} (the scenario's horizon), got {req.t}"))
            continue
        mean_t = net.mean_demand[req.t]  # [N, K]
        seen = np.zeros((N, K), dtype=bool)
        for j, e in enumerate(req.nodes):
            eloc = (*rloc, "nodes", j)
            i = lp.node_index.get(e.node)
            if i is None:
                problems.append(((*eloc, "node"), f"unknown node {e.node!r} (known: {', '.join(net.node_ids)})"))
                continue
            if e.sku is None:
                if K != 1:
                    problems.append(((*eloc, "sku"), f"required: the network has {K} SKUs ({', '.join(net.skus)})"))
                    continue
                k = 0
            else:
                k = lp.sku_index.get(e.sku, -1)
                if k < 0:
                    problems.append(((*eloc, "sku"), f"unknown SKU {e.sku!r} (known: {', '.join(net.skus)})"))
                    continue
            if seen[i, k]:
                problems.append(((*eloc,), f"duplicate entry for node {e.node!r}, SKU {net.skus[k]!r}"))
                continue
            seen[i, k] = True
            on_hand[b, i, k] = e.on_hand
            if e.backlog and not net.backorder:
                problems.append(((*eloc, "backlog"), "must be 0: the network uses lost sales (unmet demand is lost)"))
            backlog[b, i, k] = e.backlog
            if e.in_transit is not None:
                if len(e.in_transit) != P:
                    problems.append(
                        (
                            (*eloc, "in_transit"),
                            f"expected {P} values (pipeline length: slot j arrives at the start of t+1+j), "
                            f"got {len(e.in_transit)}",
                        )
                    )
                else:
                    pipeline[b, i, k] = e.in_transit
            fc = mean_t[i, k] if e.forecast is None else e.forecast
            if e.recent_demand is None:
                hist[b, i, k] = fc
                rate[b, i, k] = fc
            else:
                rd = e.recent_demand[-H:]
                hist[b, i, k, : H - len(rd)] = fc
                hist[b, i, k, H - len(rd) :] = rd
                rate[b, i, k] = fc if e.forecast is not None else float(np.mean(rd))
        if not seen.all():
            ii, kk = np.nonzero(~seen)
            miss = [
                f"{net.node_ids[i]}/{net.skus[k]}" if K > 1 else net.node_ids[i] for i, k in zip(ii, kk, strict=True)
            ]
            more = f" and {len(miss) - 20} more" if len(miss) > 20 else ""
            problems.append(((*rloc, "nodes"), f"missing node(s): {', '.join(miss[:20])}{more}"))
    if problems:
        raise RequestError(problems)
    state = observed_state(t, on_hand, backlog, pipeline, hist)
    return state, rate


def group_by_period(requests: list[RecommendationRequest]) -> dict[int, list[int]]:
    """Indices of the requests per period t, in order (one policy call per period)."""
    groups: dict[int, list[int]] = {}
    for b, r in enumerate(requests):
        groups.setdefault(r.t, []).append(b)
    return groups


def _check_action(net: Network, a: Action, B: int, who: str) -> None:
    for name, arr, shape in (
        ("orders", a.orders, (B, net.n_nodes, net.n_skus)),
        ("transfers", a.transfers, (B, net.n_lanes, net.n_skus)),
    ):
        arr = np.asarray(arr)
        # min >= 0 is False for NaN; max finite rules out inf: two reductions instead of four passes
        if arr.shape != shape or not arr.min(initial=0.0) >= 0.0 or not np.isfinite(arr.max(initial=0.0)):
            raise PolicyOutputError(
                f"{who} returned invalid {name} (shape {arr.shape}, expected {shape}, finite, >= 0)"
            )


def feasible(net: Network, state: State, action: Action) -> Any:
    """Apply ``action`` to ``state`` through the core with zero demand: returns its StepOutput."""
    B, N, K = state.on_hand.shape
    exo = Exogenous(
        demand=np.broadcast_to(np.zeros(1), (B, net.periods, N, K)),
        lead_time=np.broadcast_to(net.lt_values[:, 0], (B, net.periods, N)),
    )
    return step(net, state, action, exo)[1]


def _clean(x: np.ndarray) -> list[Any]:
    """Nested lists with float noise from rationing rounded away (1e-9 is far below one unit), no -0.0."""
    return (np.round(x, 9) + 0.0).tolist()


def recommend(lp: LoadedPolicy, state: State, rate: np.ndarray) -> list[dict[str, Any]]:
    """One response body per batch row: the policy's orders and feasible transfers, with context."""
    net = lp.net
    B, N, K = state.on_hand.shape
    action = lp.policy.act(state)
    _check_action(net, action, B, f"policy {lp.name!r}")
    ref = lp.reference.act(state)
    _check_action(net, ref, B, f"reference policy {lp.reference.name!r}")
    out = feasible(net, state, action)
    asked = np.asarray(action.transfers, dtype=float)  # [B, E, K]
    shipped = out.lane_shipped  # [B, E, K]
    ip_after = out.on_hand + out.in_transit - out.backlog
    demand_rate = rate + lp.downstream_demand[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        dos = np.where(demand_rate > 1e-12, out.on_hand / demand_rate, np.nan)
    cols = [
        _clean(x.reshape(B, N * K))  # node-major: entry i * K + k
        for x in (action.orders, out.order_shipped, ref.orders, state.inventory_position, ip_after, out.on_hand, dos)
    ]
    node_sku = [(n, s) for n in net.node_ids for s in net.skus]
    ids, skus = net.node_ids, net.skus
    lf, lt, ll = net.lane_from, net.lane_to, net.lane_lead
    asked_l, shipped_l = _clean(asked), _clean(shipped)
    by_row: dict[str, list[list[tuple[int, int]]]] = {}
    for key, mask in (
        ("short", action.orders - out.order_shipped > 1e-6),  # (b, i, k): order not fully shippable
        ("rationed", asked - shipped > 1e-6),  # (b, e, k): transfer cut
        ("moving", shipped > 1e-9),  # (b, e, k): transfer that ships
    ):
        rows_b: list[list[tuple[int, int]]] = [[] for _ in range(B)]
        for bb, x, k in np.argwhere(mask).tolist():
            rows_b[bb].append((x, k))
        by_row[key] = rows_b
    policy_ref = {"name": lp.name, "version": lp.version, "spec": lp.spec}
    results = []
    for b in range(B):
        o, osh, ro, ipb, ipa, oh, ds = (c[b] for c in cols)
        rows = [
            {
                "node": n,
                "sku": s,
                "order": o[j],
                "order_shippable": osh[j],
                "reference_order": ro[j],
                "inventory_position": ipb[j],
                "inventory_position_after": ipa[j],
                "on_hand_after": oh[j],
                "days_of_supply": None if ds[j] != ds[j] else ds[j],
            }
            for j, (n, s) in enumerate(node_sku)
        ]
        warnings = [
            f"order {ids[i]}/{skus[k]}: only {osh[i * K + k]:.6g} of {o[i * K + k]:.6g} units can ship now"
            " (source stock, lane or storage capacity, or disruption)"
            for i, k in by_row["short"][b]
        ]
        warnings += [
            f"transfer {ids[lf[e]]}->{ids[lt[e]]}/{skus[k]}: rationed from {asked_l[b][e][k]:.6g} to"
            f" {shipped_l[b][e][k]:.6g} units (sender on-hand, lane or storage capacity, or disruption)"
            for e, k in by_row["rationed"][b]
        ]
        transfers = [
            {
                "from": ids[lf[e]],
                "to": ids[lt[e]],
                "sku": skus[k],
                "quantity": shipped_l[b][e][k],
                "requested": asked_l[b][e][k],
                "lead_time": int(ll[e]),
            }
            for e, k in by_row["moving"][b]
        ]
        results.append(
            {
                "policy": policy_ref,
                "reference_policy": lp.reference.name,
                "scenario": net.scenario.name,
                "t": state.t,
                "nodes": rows,
                "transfers": transfers,
                "warnings": warnings,
            }
        )
    return results


def state_to_request(net: Network, state: State, b: int = 0) -> dict[str, Any]:
    """Row ``b`` of a core State as a request body (the inverse of :func:`build_state`)."""
    entries = []
    for i, n in enumerate(net.node_ids):
        for k, s in enumerate(net.skus):
            entries.append(
                {
                    "node": n,
                    "sku": s,
                    "on_hand": float(state.on_hand[b, i, k]),
                    "backlog": float(state.backlog[b, i, k]),
                    "in_transit": state.pipeline[b, i, k].astype(float).tolist(),
                    "recent_demand": state.demand_hist[b, i, k].astype(float).tolist(),
                    "forecast": float(net.mean_demand[min(state.t, net.periods - 1), i, k]),
                }
            )
    return {"t": int(state.t), "nodes": entries}


def example_state(lp: LoadedPolicy, periods: int = 8, seed: int = 0) -> dict[str, Any]:
    """A realistic request body: the reference policy run ``periods`` periods from the initial state."""
    from invnet.envs.batched import BatchedInventoryEnv

    env = BatchedInventoryEnv(lp.net, 1, seed=seed)
    env.reset(observe=False)
    for _ in range(max(0, min(periods, lp.net.periods - 1))):
        env.step_quantities(lp.reference.act(env.state), observe=False)
    return state_to_request(lp.net, env.state)
