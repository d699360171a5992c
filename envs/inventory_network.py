"""PettingZoo env card: ``inventory_network_v0``.

What it models
    A network of stock-holding nodes (DCs, warehouses, stores) over a horizon of periods. Each node
    is an agent. Every period each agent orders from its source (the external supplier, with a
    possibly random lead time, or its upstream node over a lane) and may ship units to other nodes
    over its outbound lanes (lateral transfers). Demand is random (Poisson, negative binomial,
    normal; seasonal, trending, correlated, with scheduled shocks) or replayed from a table. Unmet
    demand is lost or backordered. Nodes can be disrupted (neither ship nor receive).

Event order (one ``step``)
    arrivals -> decisions -> shipping (disruption, lane capacity, receiver capacity, proportional
    rationing of sender stock) -> demand (backlog first) -> costs. Full statement in
    :mod:`invnet.envs.core`.

Spaces
    Observation per agent: ``Box(-inf, inf, (obs_dim,), float32)``: own on-hand, backlog, inventory
    position, forecast, pipeline by arrival period and recent demand, all divided by the node's
    mean throughput; season sin/cos and time fraction; static node features (cost ratio, lead
    time, supplier-fed flag, capacity, one-hot id, outbound lane mask, lane lead times and costs);
    with ``visibility="neighbours"`` the receivers' stock and days of supply per lane slot and the
    source's days of supply; with ``"all"`` every node's days of supply. ``state()`` is the global
    state for centralised critics.
    Action per agent: ``Box(-1, 1, (K * (1 + M),), float32)``, decoded as in :mod:`invnet.envs.spaces`
    (order quantity or order-up-to target, then one transfer per outbound lane; padded slots masked).

Reward
    ``team`` (default): every agent receives minus the network's total cost of the period;
    ``local``: minus its own cost; ``mixed``: ``w * local + (1 - w) * team``.

Infos
    ``infos[agent]`` carries the node's cost terms and flows for the period: ``holding_cost``,
    ``shortage_cost``, ``order_cost``, ``transfer_cost``, ``demand``, ``sales``, ``lost_sales``,
    ``backlog``, ``on_hand``, ``in_transit``, ``shipped_out``, ``received``, ``supplier_in``,
    ``refused`` (summed over SKUs), so conservation can be audited from outside.

Episodes end by truncation at the horizon. Version history: v0 (first release).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import gymnasium
import numpy as np
from invnet.envs.batched import BatchedInventoryEnv
from invnet.envs.core import StepOutput
from invnet.envs.scenario import Scenario
from pettingzoo import ParallelEnv
from pettingzoo.utils import parallel_to_aec, wrappers

ENV_ID = "inventory_network_v0"
INFO_KEYS = (
    "holding_cost",
    "shortage_cost",
    "order_cost",
    "transfer_cost",
    "demand",
    "sales",
    "lost_sales",
    "backlog",
    "on_hand",
    "in_transit",
    "shipped_out",
    "received",
    "supplier_in",
    "refused",
)


def node_infos(out: StepOutput, node_ids: list[str], row: int = 0) -> dict[str, dict[str, float]]:
    """Per-node info dicts (SKUs summed) for batch row ``row``."""
    n_cost = 4  # the first four keys are [B, N] cost terms, the rest [B, N, K] flows
    cols = [getattr(out, key)[row] for key in INFO_KEYS]
    flows = cols[n_cost:] if cols[n_cost].shape[1] == 1 else [c.sum(axis=1, keepdims=True) for c in cols[n_cost:]]
    table = np.concatenate([c[:, None] for c in cols[:n_cost]] + flows, axis=1).tolist()  # [N, 14] python floats
    return {nid: dict(zip(INFO_KEYS, vals, strict=True)) for nid, vals in zip(node_ids, table, strict=True)}


class InventoryNetworkEnv(ParallelEnv):
    """Parallel PettingZoo env over a batch-of-one :class:`BatchedInventoryEnv` (env card above)."""

    metadata = {"name": ENV_ID, "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, scenario: Scenario, render_mode: str | None = None, **options: Any) -> None:
        self.scenario = scenario
        self.render_mode = render_mode
        self._env = BatchedInventoryEnv(scenario, 1, **options)
        self.possible_agents = list(self._env.net.node_ids)
        self._agent_set = set(self.possible_agents)
        self.agents: list[str] = []
        sp = self._env.spaces
        self._obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (sp.obs_dim,), np.float32)
        self._act_space = gymnasium.spaces.Box(-1.0, 1.0, (sp.action_dim,), np.float32)
        self._state_space = gymnasium.spaces.Box(-np.inf, np.inf, (sp.state_dim,), np.float32)
        self._last: StepOutput | None = None

    @property
    def batched(self) -> BatchedInventoryEnv:
        """The underlying batch-of-one env (core state, network, spaces)."""
        return self._env

    @cache  # noqa: B019 - spaces are fixed per agent
    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_space

    @cache  # noqa: B019
    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._act_space

    @property
    def state_space(self) -> gymnasium.spaces.Box:
        return self._state_space

    def _obs_dict(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.possible_agents, obs[0], strict=True))

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs = self._env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        self._last = None
        return self._obs_dict(obs), {a: {} for a in self.agents}

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("episode is over: call reset()")
        names = self.possible_agents
        if actions.keys() != self._agent_set:
            missing = [a for a in self.agents if a not in actions]
            if missing:
                raise ValueError(f"actions: missing agent(s) {missing}")
            unknown = [a for a in actions if a not in self.possible_agents]
            if unknown:
                raise ValueError(f"actions: unknown agent(s) {unknown}")
        a = np.array([actions[n] for n in names], dtype=float)  # [N, action_dim] when every action is a vector
        if a.ndim != 2:
            a = np.array([np.asarray(actions[n], dtype=float).reshape(-1) for n in names])
        a = a[None]
        obs, rewards, done, out = self._env.step(a)
        self._last = out
        infos = node_infos(out, names)
        rew = dict(zip(names, rewards[0].tolist(), strict=True))
        terms = dict.fromkeys(names, False)
        truncs = dict.fromkeys(names, done)
        obs_d = dict(zip(names, obs[0], strict=True))
        if done:
            self.agents = []
        return obs_d, rew, terms, truncs, infos

    def state(self) -> np.ndarray:
        return self._env.global_state()[0]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        st = self._env.state
        lines = [f"t={st.t}"]
        for i, n in enumerate(self.possible_agents):
            lines.append(
                f"  {n:>16}: on_hand={st.on_hand[0, i].sum():8.1f} backlog={st.backlog[0, i].sum():7.1f}"
                f" in_transit={st.pipeline[0, i].sum():8.1f}"
            )
        return "\n".join(lines)

    def close(self) -> None:
        pass


def parallel_env(scenario: Scenario, **options: Any) -> InventoryNetworkEnv:
    """The PettingZoo ``ParallelEnv`` for a scenario (options: action_mode, reward, visibility, seed...)."""
    return InventoryNetworkEnv(scenario, **options)


def env(scenario: Scenario, **options: Any):  # noqa: ANN201 - PettingZoo AEC wrapper type
    """The AEC form, through PettingZoo's converter, with the standard order-enforcing wrapper."""
    aec = parallel_to_aec(parallel_env(scenario, **options))
    return wrappers.OrderEnforcingWrapper(aec)


class CentralizedInventoryEnv(gymnasium.Env):
    """Single-agent Gymnasium wrapper: one controller sees all nodes and acts for all of them.

    Observation: every agent's observation concatenated (``N * obs_dim``); action: every agent's
    action concatenated (``N * action_dim``); reward: minus the network cost of the period.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario, **options: Any) -> None:
        options.setdefault("reward", "team")
        self._env = BatchedInventoryEnv(scenario, 1, **options)
        sp = self._env.spaces
        N = self._env.n_agents
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (N * sp.obs_dim,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (N * sp.action_dim,), np.float32)

    @property
    def batched(self) -> BatchedInventoryEnv:
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs = self._env.reset(seed=seed)
        return obs.reshape(-1), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        N = self._env.n_agents
        a = np.asarray(action, dtype=float).reshape(1, N, -1)
        obs, _, done, out = self._env.step(a)
        cost = float(out.cost.sum())
        info = {
            k: float(np.sum(getattr(out, k))) for k in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost")
        }
        return obs.reshape(-1), -cost, False, done, info


def gym_env(scenario: Scenario, **options: Any) -> CentralizedInventoryEnv:
    """The single-agent Gymnasium wrapper."""
    return CentralizedInventoryEnv(scenario, **options)
