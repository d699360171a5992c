"""Random streams of an episode: demand paths and supplier lead times.

Common random numbers: an episode is keyed by ``(seed, reset_count)``; demand and lead times come
from two independent child streams of that key, so two policies run on the same key see the same
demand and the same lead-time draws, whatever they order.
"""

from __future__ import annotations

import numpy as np
from invnet.envs.scenario import Scenario, ScenarioError

DEMAND_STREAM, LEAD_TIME_STREAM = 0, 1


def episode_rng(seed: int, reset_count: int, stream: int) -> np.random.Generator:
    """The generator for one stream of one episode (never global seeding)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(reset_count), stream])


def load_replay_table(s: Scenario) -> np.ndarray:
    """[T_table, N, K] demand from the scenario's replay file (columns period, node, sku, demand)."""
    path = s.replay_path()
    assert path is not None
    try:
        import pandas as pd  # lazy: keeps `invnet --help` and env construction light

        df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - any reader error becomes a field error
        raise ScenarioError([f"demand.replay: cannot read {path}: {e}"]) from None
    missing = {"period", "node", "demand"} - set(df.columns)
    if missing:
        raise ScenarioError([f"demand.replay: {path} lacks column(s) {sorted(missing)}"])
    if "sku" not in df.columns:
        if len(s.skus) > 1:
            raise ScenarioError([f"demand.replay: {path} needs a sku column for {len(s.skus)} SKUs"])
        df = df.assign(sku=s.skus[0])
    ids = {n.id: i for i, n in enumerate(s.nodes)}
    skus = {k: i for i, k in enumerate(s.skus)}
    problems = []
    unknown_nodes = sorted(set(df["node"].astype(str)) - set(ids))
    if unknown_nodes:
        problems.append(f"demand.replay: unknown node(s) {unknown_nodes[:5]} in {path}")
    unknown_skus = sorted(set(df["sku"].astype(str)) - set(skus))
    if unknown_skus:
        problems.append(f"demand.replay: unknown SKU(s) {unknown_skus[:5]} in {path}")
    d = pd.to_numeric(df["demand"], errors="coerce")
    if d.isna().any() or (d < 0).any():
        problems.append(f"demand.replay: demand must be numbers >= 0 ({path})")
    if problems:
        raise ScenarioError(problems)
    periods = np.sort(df["period"].unique())
    T = len(periods)
    if T < s.periods:
        raise ScenarioError([f"demand.replay: {T} periods in {path}, the scenario needs at least {s.periods}"])
    pos = {p: i for i, p in enumerate(periods)}
    out = np.zeros((T, len(ids), len(skus)))
    out[
        df["period"].map(pos).to_numpy(),
        df["node"].astype(str).map(ids).to_numpy(),
        df["sku"].astype(str).map(skus).to_numpy(),
    ] = d.to_numpy()
    return out


class DemandSampler:
    """Samples episode demand paths ``[T, N, K]`` for one scenario (precomputed schedules)."""

    def __init__(self, s: Scenario, mean: np.ndarray) -> None:
        self.T, self.N, self.K = mean.shape
        self.mean = mean  # [T, N, K]
        self.replay = load_replay_table(s) if s.demand.replay is not None else None
        self.rho = s.demand.correlation
        self.groups: dict[str, list[tuple[int, int, float, bool]]] = {
            "poisson": [],
            "negative_binomial": [],
            "normal": [],
        }
        for i, node in enumerate(s.nodes):
            for k, sku in enumerate(s.skus):
                spec = s.demand_spec(node.id, sku)
                if spec is None:
                    continue
                cv = spec.cv if spec.cv is not None else (spec.sd / spec.mean if spec.mean > 0 else 0.0)
                self.groups[spec.dist].append((i, k, cv, spec.round))
        self.cells = [(i, k) for g in self.groups.values() for (i, k, _, _) in g]
        # per distribution: node and SKU indices, means [T, C], cv [C], rounding flags [C] (fixed per scenario)
        self._plans = [
            (
                dist,
                np.array([c[0] for c in cells]),
                np.array([c[1] for c in cells]),
                self.mean[:, [c[0] for c in cells], [c[1] for c in cells]],
                np.array([c[2] for c in cells]),
                np.array([c[3] for c in cells]),
            )
            for dist, cells in self.groups.items()
            if cells
        ]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One episode's demand ``[T, N, K]`` (non-negative)."""
        if self.replay is not None:
            start = int(rng.integers(0, self.replay.shape[0] - self.T + 1))
            return self.replay[start : start + self.T].copy()
        out = np.zeros((self.T, self.N, self.K))
        if not self.cells:
            return out
        if self.rho != 0.0:
            return self._sample_copula(rng, out)
        for dist, ii, kk, mu, cv, rnd in self._plans:
            if dist == "poisson":
                out[:, ii, kk] = rng.poisson(mu)
            elif dist == "negative_binomial":
                out[:, ii, kk] = _nbinom(rng, mu, cv)
            else:
                x = np.maximum(rng.normal(mu, cv * mu), 0.0)
                out[:, ii, kk] = np.where(rnd, np.round(x), x)
        return out

    def _sample_copula(self, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """Gaussian copula with equicorrelation ``rho`` across all demand cells (Nelsen 2006, ch. 2)."""
        from scipy import stats

        C = len(self.cells)
        corr = np.full((C, C), self.rho) + (1.0 - self.rho) * np.eye(C)
        try:
            chol = np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise ScenarioError([f"demand.correlation: {self.rho} is not a valid correlation for {C} nodes"]) from None
        u = stats.norm.cdf(rng.standard_normal((self.T, C)) @ chol.T)  # [T, C]
        u = np.clip(u, 1e-12, 1 - 1e-12)
        c = 0
        for dist, cells in self.groups.items():
            for i, k, cv, rnd in cells:
                mu = self.mean[:, i, k]
                if dist == "poisson":
                    x = stats.poisson.ppf(u[:, c], np.maximum(mu, 1e-12))
                elif dist == "negative_binomial":
                    n, p = _nbinom_params(mu, cv)
                    x = np.where(
                        n > 0,
                        stats.nbinom.ppf(u[:, c], np.maximum(n, 1e-12), p),
                        stats.poisson.ppf(u[:, c], np.maximum(mu, 1e-12)),
                    )
                else:
                    x = np.maximum(stats.norm.ppf(u[:, c], mu, np.maximum(cv * mu, 1e-12)), 0.0)
                    x = np.round(x) if rnd else x
                out[:, i, k] = np.where(mu > 0, x, 0.0)
                c += 1
        return out


def _nbinom_params(mu: np.ndarray, cv: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """NB(n, p) with mean mu and variance (cv mu)^2: n = mu^2 / (var - mu), p = n / (n + mu).

    Where var <= mu (small seasonal means) n is returned as 0 and callers fall back to Poisson.
    """
    var = (cv * mu) ** 2
    excess = var - mu
    n = np.where(excess > 1e-9, mu**2 / np.where(excess > 1e-9, excess, 1.0), 0.0)
    p = np.where(n > 0, n / np.where(n > 0, n + mu, 1.0), 1.0)
    return n, p


def _nbinom(rng: np.random.Generator, mu: np.ndarray, cv: np.ndarray) -> np.ndarray:
    n, p = _nbinom_params(mu, cv)
    ok = n > 0
    x = rng.poisson(np.where(ok, 0.0, mu))
    nb = rng.negative_binomial(np.where(ok, n, 1.0), np.where(ok, p, 0.5))
    return np.where(ok, nb, x).astype(float)


def sample_lead_times(lt_values: np.ndarray, lt_cdf: np.ndarray, T: int, rng: np.random.Generator) -> np.ndarray:
    """[T, N] supplier lead time of an order placed in each period (drawn whether or not one is placed)."""
    u = rng.random((T, lt_values.shape[0]))
    pick = (u[:, :, None] > lt_cdf[None, :, :]).sum(axis=2)  # [T, N]
    pick = np.minimum(pick, lt_values.shape[1] - 1)
    return np.take_along_axis(np.broadcast_to(lt_values, (T, *lt_values.shape)), pick[:, :, None], axis=2)[:, :, 0]
