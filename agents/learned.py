"""Learned policies: a trained actor network behind the same :class:`~invnet.agents.base.Policy` interface.

``act``: observe (:meth:`AgentSpaces.observe`) -> normalise (saved statistics) -> actor mean
(deterministic) -> clip to [-1, 1] -> decode with the policy's action mode. NumPy only: no torch at
inference. Load one with :func:`invnet.training.bundle.load_bundle_policy` or ``resolve_policy(path, net)``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from invnet.envs.core import Action, State
from invnet.envs.network import Network


def network_fingerprint(net: Network) -> str:
    """Short hash of what a per-agent policy depends on: node ids, SKUs and lanes (from, to, lead time)."""
    d = {
        "nodes": list(net.node_ids),
        "skus": list(net.skus),
        "lanes": [
            [net.node_ids[int(f)], net.node_ids[int(t)], int(lt)]
            for f, t, lt in zip(net.lane_from, net.lane_to, net.lane_lead, strict=True)
        ],
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def mlp_forward(weights: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """tanh hidden layers, linear output: the actor mean in NumPy (weights ``[(W [in, out], b [out]), ...]``)."""
    h = np.asarray(x, dtype=np.float32)
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        if i < len(weights) - 1:
            h = np.tanh(h)
    return h


class LearnedPolicy:
    """A trained shared actor acting for every node (deterministic: the Gaussian mean)."""

    def __init__(
        self,
        net: Network,
        weights: list[tuple[np.ndarray, np.ndarray]],
        obs_norm: dict[str, Any],
        mapper: Any,  # invnet.training.actions.ActionMapper
        name: str = "learned",
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.net = net
        self.name = name
        self.weights = weights
        self.obs_norm = obs_norm
        self.mapper = mapper
        self.meta = dict(meta or {})
        obs_dim = mapper.spaces.obs_dim
        if weights[0][0].shape[0] != obs_dim:
            raise ValueError(f"policy: actor expects {weights[0][0].shape[0]} observation features, got {obs_dim}")
        if weights[-1][0].shape[1] != mapper.spaces.action_dim:
            raise ValueError(
                f"policy: actor gives {weights[-1][0].shape[1]} action values, env needs {mapper.spaces.action_dim}"
            )

    @property
    def action_mode(self) -> str:
        return self.mapper.mode

    def actions(self, state: State) -> np.ndarray:
        """[B, N, action_dim] deterministic actions in [-1, 1]."""
        from invnet.training.normalize import normalize_obs

        n = self.obs_norm
        obs = normalize_obs(self.mapper.spaces.observe(state), n["mean"], n["var"], n["clip"], n["eps"])
        return np.clip(mlp_forward(self.weights, obs), -1.0, 1.0)

    def act(self, state: State) -> Action:
        return self.mapper.decode(self.actions(state), state)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.meta.items() if k in ("bundle", "algo", "action_mode", "fingerprint", "run_id")}
