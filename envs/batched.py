"""Batched environment: B copies of a network stepped together over the pure core.

Row ``b`` of a batched env seeded with ``seed`` draws its r-th episode from the key
``(seed + b, r)``, so it reproduces exactly a single env (PettingZoo or batched) seeded with
``seed + b``. All rows share the horizon and reset together.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from invnet.envs.core import Action, Exogenous, State, StepOutput, initial_state, step, validate_action
from invnet.envs.demand import DemandSampler, sample_lead_times
from invnet.envs.network import Network, compile_network
from invnet.envs.scenario import Scenario
from invnet.envs.spaces import AgentSpaces, team_rewards

BACKENDS = ("auto", "numpy", "numba")


def sample_exogenous(
    net: Network,
    sampler: DemandSampler,
    seeds: list[int],
    reset_count: int,
    parallel: bool | None = None,
    fixed_lead: np.ndarray | None = None,
) -> Exogenous:
    """Draw demand and lead times of episode ``reset_count`` for each seed (independent streams, CRN-safe);
    ``parallel`` as :meth:`DemandSampler.sample` (the same draws either way). With fixed lead times the lead
    times are ``fixed_lead`` when given (the array of a previous episode, reused), else a new [B, T, N] array."""
    demand = sampler.sample(seeds, reset_count, parallel=parallel)
    if net.fixed_lead_times:
        shape = (len(seeds), net.periods, net.n_nodes)
        lead = fixed_lead if fixed_lead is not None else np.broadcast_to(net.lt_values[:, 0], shape).copy()
    else:
        lead = sample_lead_times(net.node_ids, net.lt_values, net.lt_cdf, net.periods, seeds, reset_count)
    return Exogenous(demand=demand, lead_time=lead)


class BatchedInventoryEnv:
    """B independent copies of a scenario; observations ``[B, N, obs_dim]``, rewards ``[B, N]``.

    ``step`` takes per-agent actions in [-1, 1] (decoded by :class:`AgentSpaces`);
    ``step_quantities`` takes an :class:`Action` of unit quantities (baselines, server).
    ``backend``: ``"numpy"`` steps with :func:`invnet.envs.core.step`, ``"numba"`` with the compiled
    kernels of :mod:`invnet.envs.core_jit` (same results, tested equal), ``"auto"`` is numba (a required
    dependency: the demand streams are compiled too).
    ``parallel`` (numba backend, one SKU; and the demand draws of every reset): ``None`` steps batches of at
    least :data:`~invnet.envs.core_jit.PARALLEL_MIN_BATCH` rows on all cores, ``True`` any batch, ``False`` none
    (identical results; one core is cheaper in CPU time and better on a machine whose other cores are busy).
    """

    def __init__(
        self,
        scenario: Scenario | Network,
        batch_size: int = 1,
        seed: int | None = None,
        action_mode: str | None = None,
        reward: str | None = None,
        reward_weight: float | None = None,
        visibility: str | None = None,
        backend: str = "auto",
        parallel: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if parallel not in (None, True, False):
            raise ValueError(f"parallel: must be true, false or None (automatic), got {parallel!r}")
        self.net = scenario if isinstance(scenario, Network) else compile_network(scenario)
        a = self.net.scenario.agents
        for name, val, ok in (
            ("action_mode", action_mode, ("quantity", "order_up_to")),
            ("reward", reward, ("team", "local", "mixed")),
            ("visibility", visibility, ("own", "neighbours", "all")),
        ):
            if val is not None and val not in ok:
                raise ValueError(f"{name}: must be one of {ok}, got {val!r}")
        self.spaces = AgentSpaces(self.net, action_mode or a.action_mode, visibility or a.visibility)
        self.reward_mode = reward or a.reward
        self.reward_weight = a.reward_weight if reward_weight is None else reward_weight
        self.batch_size = batch_size
        self.sampler = self.net.demand_sampler
        self._seed = int(np.random.SeedSequence().entropy % (2**31)) if seed is None else int(seed)
        self._reset_count = 0
        self.state: State = initial_state(self.net, batch_size, a.demand_history)
        self.exo: Exogenous | None = None
        self._fixed_lead: np.ndarray | None = None  # fixed lead times: the array the first reset built, reused
        self.backend = _resolve_backend(backend)
        self._parallel = parallel
        self._jit = None
        if self.backend == "numba":
            from invnet.envs.core_jit import PARALLEL_MIN_BATCH, JitStepper  # lazy: only this backend needs them

            threshold = PARALLEL_MIN_BATCH if parallel is None else (1 if parallel else sys.maxsize)
            self._jit = JitStepper(self.spaces, self.reward_mode, self.reward_weight, parallel_min_batch=threshold)

    @property
    def n_agents(self) -> int:
        return self.net.n_nodes

    @property
    def seeds(self) -> list[int]:
        return [self._seed + b for b in range(self.batch_size)]

    def reset(self, seed: int | None = None, observe: bool = True) -> np.ndarray | None:
        """Start new episodes; returns observations ``[B, N, obs_dim]`` (None if not ``observe``)."""
        if seed is not None:
            self._seed, self._reset_count = int(seed), 0
        self.exo = sample_exogenous(
            self.net, self.sampler, self.seeds, self._reset_count, self._parallel, self._fixed_lead
        )
        if self.net.fixed_lead_times:  # (not an exo assigned from outside: only arrays this env built)
            self._fixed_lead = self.exo.lead_time
        self._reset_count += 1
        self.state = initial_state(self.net, self.batch_size, self.net.scenario.agents.demand_history)
        return self._initial_observation() if observe else None

    def _initial_observation(self) -> np.ndarray:
        """Observations of the initial state: its rows are alike (:func:`initial_state`), so one row is observed
        and repeated (observing 1,024 rows costs ~1.5 ms)."""
        one = initial_state(self.net, 1, self.net.scenario.agents.demand_history)
        obs = self.spaces.observe(one) if self._jit is None else self._jit.observe(one)
        return np.repeat(obs, self.batch_size, axis=0)

    @property
    def done(self) -> bool:
        return self.state.t >= self.net.periods

    def step_quantities(
        self, action: Action, observe: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, bool, StepOutput]:
        """Apply unit quantities; returns (obs or None if not ``observe``, rewards [B, N], episode_over, outputs)."""
        self._check_running()
        validate_action(self.net, action, self.batch_size)
        return self._advance(action, observe)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, StepOutput]:
        """Apply per-agent actions ``[B, N, action_dim]`` in [-1, 1]."""
        self._check_running()
        if self._jit is not None:  # decode + step + rewards + observation in one compiled call
            self.state, out, rewards, obs = self._jit.advance(self.state, actions, self.exo, True)
            return obs, rewards, self.done, out
        return self._advance(self.spaces.decode(actions, self.state), True)  # decode validates the actions

    def _check_running(self) -> None:
        if self.exo is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("episode is over: call reset()")

    def _advance(self, action: Action, observe: bool) -> tuple[np.ndarray | None, np.ndarray, bool, StepOutput]:
        if self._jit is None:
            self.state, out = step(self.net, self.state, action, self.exo)
        else:
            self.state, out = self._jit.step(self.state, action, self.exo)
        rewards = team_rewards(out.cost, self.reward_mode, self.reward_weight)
        return (self._observe() if observe else None), rewards, self.done, out

    def _observe(self) -> np.ndarray:
        return self.spaces.observe(self.state) if self._jit is None else self._jit.observe(self.state)

    def global_state(self) -> np.ndarray:
        return self.spaces.global_state(self.state)

    def info(self) -> dict[str, Any]:
        return {"t": self.state.t, "seeds": self.seeds, "reset_count": self._reset_count}


def _resolve_backend(backend: str) -> str:
    """``auto`` -> ``numba``; ValueError naming ``backend`` for anything not in BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {BACKENDS}, got {backend!r}")
    return "numba" if backend == "auto" else backend


def batched_env(scenario: Scenario, batch_size: int, **options: Any) -> BatchedInventoryEnv:
    """The batched env (entry point named in the README)."""
    return BatchedInventoryEnv(scenario, batch_size, **options)
