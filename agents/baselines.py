"""Classical replenishment baselines on the batched core, and their transfer combinations.

Every policy acts on a batch of :class:`~invnet.envs.core.State` with NumPy (no per-row loops) and
implements :class:`~invnet.agents.base.Policy`. Parameters are per node and SKU; they default to the
analytic levels of :mod:`invnet.agents.analytic` and round-trip through
``make_policy(name, net, **policy.params())``. Arrays with a leading batch axis ``[B, N, K]`` are also
accepted (one parameter set per batch row): :mod:`invnet.agents.tuning` evaluates many candidates at
once that way.

Registered names: ``base_stock``, ``echelon_base_stock``, ``s_S``, ``capped_base_stock``,
``constant_order`` and ``<replenishment>+<transfer>`` for transfer in ``threshold``, ``tie``, ``mincost``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from invnet.agents import analytic
from invnet.agents.registry import register_policy
from invnet.envs.core import Action, State
from invnet.envs.network import Network


def node_param(net: Network, value: Any, name: str, default: np.ndarray) -> np.ndarray:
    """Parameter array ``[N, K]`` (or ``[B, N, K]``) from None, a number, a per-node dict or an array.

    A dict maps node id -> number or list of one number per SKU; missing nodes keep ``default``.
    Raises ValueError naming the parameter on unknown nodes, wrong shapes or negative values.
    """
    N, K = net.n_nodes, net.n_skus
    if value is None:
        out = np.array(default, dtype=float)
    elif isinstance(value, dict):
        out = np.array(default, dtype=float).copy()
        for nid, v in value.items():
            if nid not in net.node_ids:
                raise ValueError(f"{name}.{nid}: unknown node (known: {', '.join(net.node_ids)})")
            arr = np.atleast_1d(np.asarray(v, dtype=float))
            if arr.shape not in ((1,), (K,)):
                raise ValueError(f"{name}.{nid}: expected a number or {K} numbers (one per SKU), got {v!r}")
            out[net.node_ids.index(nid)] = arr
    else:
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numbers, got {value!r}") from None
        if arr.ndim == 0:
            out = np.full((N, K), float(arr))
        elif arr.ndim == 1 and arr.shape[0] == N:
            out = np.repeat(arr[:, None], K, axis=1)
        elif arr.ndim >= 2 and arr.shape[-2:] == (N, K):
            out = arr.copy()
        else:
            raise ValueError(f"{name}: expected shape ({N}, {K}) or ({N},), got {arr.shape}")
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise ValueError(f"{name}: values must be finite and >= 0")
    return out


def node_param_dict(net: Network, arr: np.ndarray) -> dict[str, list[float]]:
    """``[N, K]`` array -> {node id: [value per SKU]} (JSON-friendly, inverse of :func:`node_param`)."""
    return {n: [float(x) for x in arr[i]] for i, n in enumerate(net.node_ids)}


def _no_transfers(net: Network, batch: int) -> np.ndarray:
    return np.zeros((batch, net.n_lanes, net.n_skus))


def echelon_position(net: Network, state: State) -> np.ndarray:
    """[B, N, K] echelon inventory position: the node's IP plus the IPs of every node downstream of it."""
    members = net.echelon_members.astype(float)  # [N, N]
    return np.einsum("ij,bjk->bik", members, state.inventory_position)


class BaseStock:
    """Installation base-stock: each node orders ``max(0, S - IP)`` per SKU (IP = on-hand + in transit - backlog).

    Levels default to :func:`invnet.agents.analytic.base_stock_levels` (critical fractile on lead-time demand).
    """

    name = "base_stock"

    def __init__(self, net: Network, levels: Any = None) -> None:
        self.net = net
        self.levels = node_param(net, levels, "levels", analytic.base_stock_levels(net))

    def position(self, state: State) -> np.ndarray:
        return state.inventory_position

    def act(self, state: State) -> Action:
        orders = np.maximum(self.levels - self.position(state), 0.0)
        return Action(orders=orders, transfers=_no_transfers(self.net, state.batch_size))

    def params(self) -> dict[str, Any]:
        return {"levels": node_param_dict(self.net, self.levels)}


class EchelonBaseStock(BaseStock):
    """Echelon base-stock (Clark & Scarf 1960): order ``max(0, S^e - echelon IP)``; optimal for serial backorders.

    Levels are echelon levels (node + everything downstream); defaults from
    :func:`invnet.agents.analytic.base_stock_levels` with ``echelon=True``.
    """

    name = "echelon_base_stock"

    def __init__(self, net: Network, levels: Any = None) -> None:
        self.net = net
        self.levels = node_param(net, levels, "levels", analytic.base_stock_levels(net, echelon=True))

    def position(self, state: State) -> np.ndarray:
        return echelon_position(self.net, state)


class SS:
    """(s, S) policy (Scarf 1960): when IP <= s order up to S, else nothing. Pays off with a fixed order cost."""

    name = "s_S"

    def __init__(self, net: Network, s: Any = None, S: Any = None) -> None:
        self.net = net
        s0, S0 = analytic.s_S_levels(net)
        self.s = node_param(net, s, "s", s0)
        self.S = node_param(net, S, "S", np.maximum(S0, self.s))
        if np.any(self.S < self.s):
            raise ValueError("S: every order-up-to level S must be >= its reorder point s")

    def act(self, state: State) -> Action:
        ip = state.inventory_position
        orders = np.where(ip <= self.s, np.maximum(self.S - ip, 0.0), 0.0)
        return Action(orders=orders, transfers=_no_transfers(self.net, state.batch_size))

    def params(self) -> dict[str, Any]:
        return {"s": node_param_dict(self.net, self.s), "S": node_param_dict(self.net, self.S)}


class CappedBaseStock:
    """Capped base-stock (Xin 2021): order ``min(cap, max(0, S - IP))``; strong for lost sales with long lead times."""

    name = "capped_base_stock"

    def __init__(self, net: Network, levels: Any = None, caps: Any = None) -> None:
        self.net = net
        S0, c0 = analytic.capped_levels(net)
        self.levels = node_param(net, levels, "levels", S0)
        self.caps = node_param(net, caps, "caps", c0)

    def act(self, state: State) -> Action:
        orders = np.minimum(np.maximum(self.levels - state.inventory_position, 0.0), self.caps)
        return Action(orders=orders, transfers=_no_transfers(self.net, state.batch_size))

    def params(self) -> dict[str, Any]:
        return {"levels": node_param_dict(self.net, self.levels), "caps": node_param_dict(self.net, self.caps)}


class ConstantOrder:
    """Constant order: the same quantity every period, whatever the state (Reiman 2004; Xin 2021)."""

    name = "constant_order"

    def __init__(self, net: Network, quantities: Any = None) -> None:
        self.net = net
        self.quantities = node_param(net, quantities, "quantities", analytic.constant_orders(net))

    def act(self, state: State) -> Action:
        B = state.batch_size
        orders = np.broadcast_to(self.quantities, (B, self.net.n_nodes, self.net.n_skus)).copy()
        return Action(orders=orders, transfers=_no_transfers(self.net, B))

    def params(self) -> dict[str, Any]:
        return {"quantities": node_param_dict(self.net, self.quantities)}


REPLENISHMENT: dict[str, type] = {
    "base_stock": BaseStock,
    "echelon_base_stock": EchelonBaseStock,
    "s_S": SS,
    "capped_base_stock": CappedBaseStock,
    "constant_order": ConstantOrder,
}


class Combined:
    """A replenishment policy plus a transfer policy; the transfer policy sees the orders just decided."""

    def __init__(self, replenish: Any, transfer: Any) -> None:
        self.net = replenish.net
        self.replenish = replenish
        self.transfer = transfer
        self.name = f"{replenish.name}+{transfer.name}"

    def act(self, state: State) -> Action:
        a = self.replenish.act(state)
        return Action(orders=a.orders, transfers=self.transfer.transfers(state, a.orders))

    def params(self) -> dict[str, Any]:
        return {**self.replenish.params(), "transfer": self.transfer.params()}


def combo_factory(replenish_name: str, transfer_name: str):  # noqa: ANN201 - a PolicyFactory
    """Factory for ``"<replenishment>+<transfer>"``: kwargs go to the replenishment policy, ``transfer`` to the other.

    Unknown keyword arguments raise ValueError naming them.
    """
    from invnet.agents.transfers import TRANSFERS

    def factory(net: Network, transfer: dict[str, Any] | None = None, **params: Any) -> Combined:
        if transfer is not None and not isinstance(transfer, dict):
            raise ValueError(f"transfer: expected a mapping of transfer parameters, got {transfer!r}")
        check_kwargs(REPLENISHMENT[replenish_name], params, f"{replenish_name}+{transfer_name}")
        check_kwargs(TRANSFERS[transfer_name], transfer or {}, f"{replenish_name}+{transfer_name}: transfer")
        return Combined(REPLENISHMENT[replenish_name](net, **params), TRANSFERS[transfer_name](net, **(transfer or {})))

    factory.__name__ = f"{replenish_name}+{transfer_name}"
    return factory


def check_kwargs(factory: Any, params: dict[str, Any], what: str) -> None:
    """ValueError naming unknown keyword parameters of ``factory`` (instead of a TypeError traceback)."""
    import inspect

    allowed = [p for p in inspect.signature(factory).parameters if p not in ("net", "self")]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{what}: unknown parameter(s) {', '.join(unknown)} (expected: {', '.join(allowed)})")


def _checked(cls: type) -> Any:
    def factory(net: Network, **params: Any) -> Any:
        check_kwargs(cls, params, cls.name)
        return cls(net, **params)

    factory.__name__ = cls.name
    factory.__doc__ = cls.__doc__
    return factory


def _register() -> None:
    from invnet.agents.transfers import TRANSFERS

    for name, cls in REPLENISHMENT.items():
        register_policy(name, _checked(cls))
        for tname in TRANSFERS:
            register_policy(f"{name}+{tname}", combo_factory(name, tname))


_register()
