"""A stable-baselines3 ``VecEnv`` over :class:`~invnet.envs.batched.BatchedInventoryEnv`: one row per (env, agent).

Rows are ordered ``row = b * N + i`` (env ``b``, node ``i``), so ``num_envs = B * N`` and one shared
network acts for every node (the observation carries node features and a one-hot id). All rows
share the horizon: at the last period every row reports ``done``, its info holds the
``terminal_observation`` and an ``episode`` summary, and the batch resets itself (SB3 auto-reset).
The horizon is a true end of the episode (no ``TimeLimit.truncated``): the env's objective is the
cost over its periods. Env ``b`` seeded ``s`` reproduces a single env seeded ``s + b`` (CRN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from invnet.envs.batched import BatchedInventoryEnv
from invnet.envs.network import Network
from invnet.training.actions import ActionMapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class InventoryVecEnv(VecEnv):
    """SB3 vectorised env: ``B`` scenario copies x ``N`` agents as ``B * N`` rows (module docstring)."""

    render_mode = None

    def __init__(
        self,
        net: Network,
        mapper: ActionMapper,
        n_envs: int,
        seed: int = 0,
        reward: str = "team",
        reward_weight: float | None = None,
    ) -> None:
        self.net = net
        self.mapper = mapper
        self.batched = BatchedInventoryEnv(
            net,
            n_envs,
            seed=seed,
            reward=reward,
            reward_weight=reward_weight,
            visibility=mapper.spaces.visibility,
            action_mode=mapper.spaces.action_mode,
        )
        self.n_agents = net.n_nodes
        self.n_envs = n_envs
        sp = mapper.spaces
        obs_space = spaces.Box(-np.inf, np.inf, (sp.obs_dim,), np.float32)
        act_space = spaces.Box(-1.0, 1.0, (sp.action_dim,), np.float32)
        super().__init__(n_envs * self.n_agents, obs_space, act_space)
        self._pending_seed: int | None = None
        self._actions: np.ndarray | None = None
        self._obs: np.ndarray | None = None
        self._zero_stats()

    # ---- helpers ------------------------------------------------------------------------------
    def _zero_stats(self) -> None:
        B = self.n_envs
        self._ret = np.zeros((B, self.n_agents))  # [B, N] undiscounted return so far
        self._cost = np.zeros(B)  # [B] network cost after warm-up
        self._served = np.zeros(B)  # [B] demand served immediately after warm-up
        self._demand = np.zeros(B)  # [B] demand after warm-up

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """[B, N, ...] -> [B * N, ...]."""
        return x.reshape(self.num_envs, *x.shape[2:])

    def global_state(self) -> np.ndarray:
        """[B, state_dim] global state of each env (MAPPO's critic input)."""
        return self.batched.global_state()

    @property
    def state(self):  # noqa: ANN201 - core State of the batch
        return self.batched.state

    def get_state(self) -> dict[str, Any]:
        """A deep copy of everything that evolves (core state, demand paths, seed counters, episode stats)."""
        import copy

        be = self.batched
        return copy.deepcopy(
            {
                "state": be.state,
                "exo": be.exo,
                "seed": be._seed,
                "reset_count": be._reset_count,
                "stats": (self._ret, self._cost, self._served, self._demand),
                "obs": self._obs,
            }
        )

    def set_state(self, d: dict[str, Any]) -> None:
        """Restore :meth:`get_state` output (resume from a checkpoint)."""
        import copy

        d = copy.deepcopy(d)
        be = self.batched
        be.state, be.exo, be._seed, be._reset_count = d["state"], d["exo"], d["seed"], d["reset_count"]
        self._ret, self._cost, self._served, self._demand = d["stats"]
        self._obs = d["obs"]

    # ---- VecEnv API -----------------------------------------------------------------------------
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset; row ``b * N + i`` reports ``seed + b`` (its env's seed)."""
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        self._pending_seed = int(seed)
        return [seed + b for b in range(self.n_envs) for _ in range(self.n_agents)]

    def reset(self) -> np.ndarray:
        obs = self.batched.reset(seed=self._pending_seed)
        self._pending_seed = None
        self._zero_stats()
        self._obs = self._rows(obs)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_async must be called before step_wait")
        B, N = self.n_envs, self.n_agents
        a = np.clip(self._actions.reshape(B, N, -1), -1.0, 1.0)
        self._actions = None
        t = self.batched.state.t
        if self.mapper.mode == "residual":
            obs, rew, done, out = self.batched.step_quantities(self.mapper.decode(a, self.batched.state))
        else:  # the env's own decoding (one compiled call on the numba backend)
            obs, rew, done, out = self.batched.step(a)
        cost = out.cost.sum(axis=1)  # [B]
        self._ret += rew
        if t >= self.net.warmup:
            self._cost += cost
            self._served += out.served_now.sum(axis=(1, 2))
            self._demand += out.demand.sum(axis=(1, 2))
        infos: list[dict[str, Any]] = [{"cost": float(cost[b])} for b in range(B) for _ in range(N)]
        obs_rows = self._rows(obs)
        dones = np.full(self.num_envs, bool(done))
        if done:
            periods = self.net.periods - self.net.warmup
            for r in range(self.num_envs):
                b = r // N
                infos[r]["terminal_observation"] = obs_rows[r]
                infos[r]["episode"] = {
                    "r": float(self._ret[b, r % N]),
                    "l": self.net.periods,
                    "cost": float(self._cost[b] / max(periods, 1)),
                    "fill_rate": float(self._served[b] / self._demand[b]) if self._demand[b] > 0 else 1.0,
                }
            obs_rows = self.reset()
        self._obs = obs_rows
        return obs_rows, self._rows(rew).astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def _indices(self, indices: Any) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """The batched env's attribute, once per row (all rows share one batched env)."""
        target = self if attr_name == "render_mode" else self.batched
        value = getattr(target, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set an attribute of the shared batched env (rows cannot differ)."""
        setattr(self.batched, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        """Call a method of the shared batched env once; its result is repeated for every requested row."""
        res = getattr(self.batched, method_name)(*method_args, **method_kwargs)
        return [res for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
