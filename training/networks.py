"""Actor and critic networks shared by IPPO and MAPPO (tanh MLPs, orthogonal init as in CleanRL).

The actor layout equals SB3's ``MlpPolicy`` (``mlp_extractor.policy_net`` + ``action_net``), so an
IPPO policy exports to the same weights format as a MAPPO one; :func:`mlp_forward` evaluates it in
NumPy for loaded policies (no torch needed at serving time).
"""

from __future__ import annotations

import numpy as np
import torch
from invnet.agents.learned import mlp_forward  # noqa: F401 - re-exported: the NumPy actor
from torch import nn


def _layer(i: int, o: int, gain: float = float(np.sqrt(2))) -> nn.Linear:
    """Orthogonal weights, zero bias (Engstrom et al. 2020, "Implementation Matters")."""
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, gain)
    nn.init.zeros_(lin.bias)
    return lin


def mlp(i: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [_layer(i, h), nn.Tanh()]
        i = h
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Gaussian policy: ``mean = head(body(obs))``, state-independent ``log_std``; one net for all agents."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], log_std_init: float = -0.5) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden)
        self.head = _layer(hidden[-1], act_dim, 0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def set_bias(self, bias: np.ndarray) -> None:
        with torch.no_grad():
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))

    def dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self(obs), self.log_std.exp())

    def export(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Weights ``[(W [in, out], b [out]), ...]`` of the mean network, for :func:`mlp_forward`."""
        lins = [m for m in self.body if isinstance(m, nn.Linear)] + [self.head]
        return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in lins]


class Critic(nn.Module):
    """Value network ``V(x)``; MAPPO feeds it the global state plus the agent's one-hot id."""

    def __init__(self, in_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.body = mlp(in_dim, hidden)
        self.head = _layer(hidden[-1], 1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


def sb3_actor_export(policy) -> list[tuple[np.ndarray, np.ndarray]]:  # noqa: ANN001 - SB3 ActorCriticPolicy
    """The mean network of an SB3 ``MlpPolicy`` in :func:`mlp_forward` format."""
    lins = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)] + [policy.action_net]
    return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy()) for m in lins]
