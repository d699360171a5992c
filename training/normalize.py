"""Running observation and reward normalisation, saved with the policy.

Welford/Chan parallel running mean and variance (Chan, Golub & LeVeque 1979), as in SB3's
``VecNormalize``; rewards are divided by the running std of the discounted return (Engstrom et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunningMeanStd:
    """Running mean and variance of vectors of ``shape``."""

    shape: tuple[int, ...] = ()
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    var: np.ndarray = field(default=None)  # type: ignore[assignment]
    count: float = 1e-4

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = np.zeros(self.shape, dtype=np.float64)
        if self.var is None:
            self.var = np.ones(self.shape, dtype=np.float64)

    def update(self, x: np.ndarray) -> None:
        """Fold a batch ``[n, *shape]`` into the running moments (parallel variance formula)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.shape)
        b_mean, b_var, b_count = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta = b_mean - self.mean
        tot = self.count + b_count
        self.mean = self.mean + delta * b_count / tot
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.var = m2 / tot
        self.count = tot

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.mean, self.var, self.count = np.array(d["mean"]), np.array(d["var"]), float(d["count"])


@dataclass
class ObsNormalizer:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)``; frozen when ``update`` is False."""

    dim: int
    clip: float = 10.0
    eps: float = 1e-8
    enabled: bool = True
    rms: RunningMeanStd = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.rms is None:
            self.rms = RunningMeanStd((self.dim,))

    def __call__(self, x: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:
            return np.asarray(x, dtype=np.float32)
        if update:
            self.rms.update(x)
        return normalize_obs(x, self.rms.mean, self.rms.var, self.clip, self.eps)

    def export(self) -> dict[str, Any]:
        """Arrays and settings for a policy bundle (identity when disabled)."""
        if not self.enabled:
            return {"mean": np.zeros(self.dim), "var": np.ones(self.dim), "clip": float("inf"), "eps": 0.0}
        return {"mean": self.rms.mean.copy(), "var": self.rms.var.copy(), "clip": self.clip, "eps": self.eps}


def normalize_obs(x: np.ndarray, mean: np.ndarray, var: np.ndarray, clip: float, eps: float) -> np.ndarray:
    """The one normalisation formula used in training and by loaded policies."""
    return np.clip((np.asarray(x, dtype=np.float64) - mean) / np.sqrt(var + eps), -clip, clip).astype(np.float32)


@dataclass
class RewardScaler:
    """Divide rewards by the running std of the discounted return (no mean shift), per row."""

    n: int
    gamma: float
    enabled: bool = True
    eps: float = 1e-8
    rms: RunningMeanStd = field(default_factory=RunningMeanStd)
    ret: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ret is None:
            self.ret = np.zeros(self.n)

    def __call__(self, r: np.ndarray, dones: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return np.asarray(r, dtype=np.float32)
        self.ret = self.ret * self.gamma + r
        self.rms.update(self.ret)
        self.ret[np.asarray(dones, dtype=bool)] = 0.0
        return (r / np.sqrt(self.rms.var + self.eps)).astype(np.float32)

    @property
    def scale(self) -> float:
        return float(np.sqrt(self.rms.var + self.eps)) if self.enabled else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"rms": self.rms.state_dict(), "ret": self.ret.copy()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.rms.load_state_dict(d["rms"])
        self.ret = np.array(d["ret"])
