"""Random streams of an episode: demand paths and supplier lead times.

Common random numbers. Every random number of an episode is a pure function of
``(seed, episode, stream, cell, period)``: a counter-based generator, the SplitMix64 output function
over a Weyl sequence (Steele, Lea & Flood 2014), keyed by the episode and by a stable hash of the
node id (and SKU). Hence:

- two policies run on the same ``(seed, episode)`` see the same demand and lead-time draws, whatever
  they order (demand and lead times use separate streams);
- row b of a batch seeded s equals a single env seeded s + b (rows are drawn independently);
- a node's demand path depends only on its id, SKU and mean schedule, not on the other nodes in the
  file: adding or removing a node keeps every other node's demand (common random numbers across
  network designs);
- the draws do not depend on the NumPy version (NumPy's ``Generator`` distributions may change).

Draws are by inversion. Discrete demand (Poisson, negative binomial): ``F^-1(u) = min{i: cdf[i] > u}``
over the float64 CDF of each distinct (distribution, mean) with a guide table (Chen & Asau 1974;
Devroye 1986, III.2.4: one or two comparisons per draw); the table spans the ``1e-15`` and ``1 - 1e-15``
quantiles (the mass beyond, < 1e-15 per tail, joins the end values). Normal demand:
``max(mu + sigma * Phi^-1(u), 0)``, rounded unless asked not to. Correlation: Gaussian copula on the same
uniforms. Inversion makes draws monotone in the mean (same u, larger mean, never less demand).

Speed (dense 10-node network, 1,024 rows x 52 periods, Poisson; noisy 2-core VM): discrete demand is
drawn row by row, uniforms then inversion of the row while it sits in L1, by a precomputed plan of the
(period, cell) steps: 2.6-3 ms on one core (was 5-7.6 ms in two passes over a [B, T, C] uniforms array),
1.5-2.2 ms on two idle cores (batches of at least :data:`PARALLEL_MIN_ROWS` rows; the same draws). A
batched reset takes 2.2-3.9 ms on the idle machine (was 5.5-9.7 ms; ~100 ms with one NumPy generator per
row); a one-row reset ~0.05 ms, as before. While another process keeps a core busy, any parallel region
(this one, the env's step) waits ~8 ms for its second thread: ``sample(..., parallel=False)`` is faster then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numba
import numpy as np
from invnet.envs.scenario import Scenario, ScenarioError

DEMAND_STREAM, LEAD_TIME_STREAM = 0, 1
_GUIDE = 8  # guide slots per table entry: the walk after the guide is 0 steps for ~97% of draws (4: ~92%)
_TAIL = 1e-15  # discrete tables cover the quantiles [_TAIL, 1 - _TAIL]; the rest joins the end values
PARALLEL_MIN_ROWS = 128  # batches this large sample on all cores (smaller ones: serial, no thread-pool overhead)
PARALLEL_CHUNK = 64  # rows per parallel task (each task allocates its row of uniforms once)

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64 Weyl increment (golden ratio)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S12 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(12)


@numba.njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:
    """SplitMix64 output function (Steele, Lea & Flood 2014): a bijection of 64-bit words."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(inline="always")
def _row_key(seed, episode, stream):  # pragma: no cover - compiled
    """Key of one row's stream: the seed, episode and stream, each mixed in (all uint64)."""
    return _mix(_mix(_mix(seed + _GAMMA) + episode + _GAMMA) + stream + _GAMMA)


@numba.njit(inline="always")
def _row_uniforms(key, cells, periods, ur):  # pragma: no cover - compiled
    """ur[t * C + c] = u in (0, 1) of cell hash ``cells[c]``, period t, for the row key ``key``."""
    C = cells.shape[0]
    for c in range(C):
        ck = _mix(key ^ cells[c])
        for t in range(periods):
            x = _mix(ck + np.uint64(t + 1) * _GAMMA)
            ur[t * C + c] = (np.float64(x >> _S12) + 0.5) * 2.220446049250313e-16  # (k + 1/2) / 2^52, exact


@numba.njit(inline="always")
def _invert(x, base, slots, cdf, guide):  # pragma: no cover - compiled
    """cdf index of F^-1(x): the least i with ``cdf[i] > x``, from the guide slot of x (table at ``base``)."""
    i = np.int64(guide[base + int(x * slots)])  # never past the answer (see _guide_kernel)
    while cdf[i] <= x:  # the last entry of each table is 1 > x: ends the walk
        i += 1
    return i


@numba.njit(inline="always")
def _invert_row(ur, plan_i, plan_f, dense, cdf, guide, orow):  # pragma: no cover - compiled
    """orow[dest[p]] = F^-1(ur[src[p]]) for each step p of the plan (rows src, guide base, dest; slots, offset)."""
    base, slots, offset = plan_i[1], plan_f[0], plan_f[1]
    if dense:  # src = dest = p (every output entry drawn, in order): a loop ~1.5x as fast
        for p in range(base.shape[0]):
            orow[p] = _invert(ur[p], base[p], slots[p], cdf, guide) + offset[p]
    else:
        src, dest = plan_i[0], plan_i[2]
        for p in range(base.shape[0]):
            orow[dest[p]] = _invert(ur[src[p]], base[p], slots[p], cdf, guide) + offset[p]


@numba.njit(inline="always")
def _is_dense(plan_i):  # pragma: no cover - compiled
    """True when the plan reads and writes entry p at step p (every output entry drawn, in the output's order)."""
    for p in range(plan_i.shape[1]):
        if plan_i[0, p] != p or plan_i[2, p] != p:
            return False
    return True


@numba.njit(cache=True)
def _uniforms_kernel(seeds, episode, stream, cells, periods, out):  # pragma: no cover - compiled
    """out[b, t, c] = u in (0, 1) for row seed ``seeds[b]``, cell hash ``cells[c]``, period t."""
    ep, st = np.uint64(episode), np.uint64(stream)
    for b in range(seeds.shape[0]):
        _row_uniforms(_row_key(seeds[b], ep, st), cells, periods, out[b].reshape(-1))


@numba.njit(inline="always")
def _sample_rows(lo, hi, seeds, episode, stream, cells, T, plan_i, plan_f, dense, cdf, guide, out):  # pragma: no cover
    """Rows ``lo:hi`` of :func:`_sample_kernel`, through one row of uniforms (stays in L1)."""
    ep, st = np.uint64(episode), np.uint64(stream)
    ur = np.empty(T * cells.shape[0])
    for b in range(lo, hi):
        _row_uniforms(_row_key(seeds[b], ep, st), cells, T, ur)
        _invert_row(ur, plan_i, plan_f, dense, cdf, guide, out[b])


@numba.njit(cache=True)
def _sample_kernel(seeds, episode, stream, cells, periods, plan_i, plan_f, cdf, guide, out):  # pragma: no cover
    """out[b] = the discrete demand of row seed ``seeds[b]`` (flat [T * N * K]): uniforms and inversion in one pass."""
    dense = _is_dense(plan_i)
    _sample_rows(0, seeds.shape[0], seeds, episode, stream, cells, periods, plan_i, plan_f, dense, cdf, guide, out)


@numba.njit(cache=True, parallel=True)
def _sample_kernel_par(chunk, seeds, episode, stream, cells, T, plan_i, plan_f, cdf, guide, out):  # pragma: no cover
    """:func:`_sample_kernel` on all cores, ``chunk`` rows per task (rows are independent: the same draws)."""
    B = seeds.shape[0]
    dense = _is_dense(plan_i)
    for q in numba.prange((B + chunk - 1) // chunk):
        lo = q * chunk
        _sample_rows(lo, min(B, lo + chunk), seeds, episode, stream, cells, T, plan_i, plan_f, dense, cdf, guide, out)


@numba.njit(cache=True)
def _invert_kernel(u, plan_i, plan_f, cdf, guide, out):  # pragma: no cover - compiled
    """out[b] = F^-1 of the uniforms ``u[b]`` (flat [T * C]) by the plan (copula and normal demand)."""
    dense = _is_dense(plan_i)
    for b in range(u.shape[0]):
        _invert_row(u[b], plan_i, plan_f, dense, cdf, guide, out[b])


@numba.njit(cache=True)
def _guide_kernel(cdf, tab_start, tab_len, guide):  # pragma: no cover - compiled
    """Guide tables (Chen & Asau 1974): table j (start s, length n) has m + 1 slots, m = _GUIDE x n, from
    ``_GUIDE * s + j``; slot g holds the cdf index (s + the count, at most n - 1) of the entries whose own slot
    ``int(cdf * m)`` is below g.

    A u falls in slot ``int(u * m)`` (the same float product, in :func:`_invert`; slot m catches a product
    rounded up to m). Float products are monotone, so each entry counted is < every u of slot g: the guide
    never passes the answer, whatever the rounding, and a draw is exactly ``min{i: cdf[i] > u}`` for any
    ``_GUIDE``.
    """
    for j in range(tab_start.shape[0]):
        s = tab_start[j]
        n = tab_len[j]
        m = _GUIDE * n
        mf = np.float64(m)
        i = 0
        for g in range(m + 1):
            while i < n - 1 and int(cdf[s + i] * mf) < g:
                i += 1
            guide[_GUIDE * s + j + g] = s + i


def cell_hash(*parts: str) -> int:
    """Stable 64-bit key of a random cell (node id, SKU, ...): the same in every process and version."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest(), "little")


def uniforms(
    seeds: Sequence[int] | np.ndarray, episode: int, stream: int, cells: Sequence[int], periods: int
) -> np.ndarray:
    """[B, periods, C] uniforms in (0, 1) of ``stream`` for each seed's episode ``episode`` and cell key."""
    c = _cell_words(cells)
    out = np.empty((len(seeds), periods, c.shape[0]))
    _uniforms_kernel(_seed_words(seeds), _word(episode), _word(stream), c, periods, out)
    return out


def _word(x: int) -> np.uint64:
    return np.uint64(int(x) & 0xFFFFFFFFFFFFFFFF)


def _seed_words(seeds: Sequence[int] | np.ndarray) -> np.ndarray:
    """Seeds as uint64 words (negative seeds wrap)."""
    return np.ascontiguousarray(seeds, dtype=np.int64).view(np.uint64)


def _cell_words(cells: Sequence[int]) -> np.ndarray:
    return np.asarray([int(x) & 0xFFFFFFFFFFFFFFFF for x in cells], dtype=np.uint64)


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
    """Samples episode demand paths ``[B, T, N, K]`` for one scenario (tables built once)."""

    def __init__(self, s: Scenario, mean: np.ndarray) -> None:
        self.T, self.N, self.K = mean.shape
        self.mean = mean  # [T, N, K]
        self.replay = load_replay_table(s) if s.demand.replay is not None else None
        self.rho = s.demand.correlation
        cells: list[tuple[int, int, str, float, bool]] = []  # node, SKU, dist, cv, round
        for i, node in enumerate(s.nodes):
            for k, sku in enumerate(s.skus):
                spec = s.demand_spec(node.id, sku)
                if spec is None:
                    continue
                cv = spec.cv if spec.cv is not None else (spec.sd / spec.mean if spec.mean > 0 else 0.0)
                cells.append((i, k, spec.dist, cv, spec.round))
        self.cells = [(i, k) for i, k, *_ in cells]
        self.keys = [cell_hash(s.nodes[i].id, s.skus[k]) for i, k in self.cells]
        self._node = np.array([c[0] for c in cells], dtype=np.int64)
        self._sku = np.array([c[1] for c in cells], dtype=np.int64)
        mu = mean[:, self._node, self._sku] if cells else np.zeros((self.T, 0))  # [T, C]
        cv = np.array([c[3] for c in cells], dtype=float)
        self._normal = np.array([c[2] == "normal" for c in cells], dtype=bool)
        self._any_normal = bool(self._normal.any())
        self._round = np.array([c[4] for c in cells], dtype=bool)
        self._mu, self._sd = mu, cv[None, :] * mu
        nb = np.array([c[2] == "negative_binomial" for c in cells], dtype=bool)
        self._tables = _discrete_tables(mu, np.broadcast_to(cv, mu.shape), np.broadcast_to(nb, mu.shape), self._normal)
        self._cells = _cell_words(self.keys)
        self._plan_i, self._plan_f = _inversion_plan(self._tables, self._node, self._sku, self.N, self.K)
        self._full = self._plan_i.shape[1] == self.T * self.N * self.K  # every entry drawn: no zeros needed

    def sample(self, seeds: Sequence[int] | np.ndarray, episode: int, parallel: bool | None = None) -> np.ndarray:
        """Demand ``[B, T, N, K]`` (non-negative) of episode ``episode`` for each seed.

        ``parallel``: ``None`` draws batches of at least :data:`PARALLEL_MIN_ROWS` rows on all cores, ``True``
        any batch, ``False`` none (the same draws: rows are independent). All cores need a thread-safe numba
        threading layer (:func:`invnet.envs.core_jit.parallel_available`); without one the draws are serial.
        """
        B = len(seeds)
        if self.replay is not None:  # a window of the table, its start drawn per row
            u = uniforms(seeds, episode, DEMAND_STREAM, [cell_hash("replay window")], 1)[:, 0, 0]
            starts = (u * (self.replay.shape[0] - self.T + 1)).astype(np.int64)
            return np.stack([self.replay[a : a + self.T] for a in starts])
        out = (np.empty if self._full else np.zeros)((B, self.T, self.N, self.K))  # empty: every entry is drawn
        if not self.cells:
            return out
        flat = out.reshape(B, self.T * self.N * self.K)  # a view
        cdf, guide = self._tables[4], self._tables[5]
        if self.rho == 0.0 and not self._any_normal:  # discrete only: uniforms and inversion in one pass, per row
            args = (_seed_words(seeds), _word(episode), np.uint64(DEMAND_STREAM), self._cells, self.T)
            args += (self._plan_i, self._plan_f, cdf, guide, flat)
            if (B >= PARALLEL_MIN_ROWS if parallel is None else parallel) and B > 1 and _parallel_available():
                previous = numba.set_parallel_chunksize(1)  # dynamic scheduling, as in core_jit
                try:
                    _sample_kernel_par(min(PARALLEL_CHUNK, -(-B // 2)), *args)
                finally:
                    numba.set_parallel_chunksize(previous)
            else:
                _sample_kernel(*args)
            return out
        u = uniforms(seeds, episode, DEMAND_STREAM, self.keys, self.T)  # [B, T, C]
        from scipy import special  # lazy: only normal or correlated demand needs it

        z = special.ndtri(u)
        if self.rho != 0.0:  # Gaussian copula with equicorrelation rho (Nelsen 2006, ch. 2)
            z = z @ self._chol().T
            u = np.minimum(special.ndtr(z), 1.0 - 2.0**-53)  # ndtr(z > 8.3) is 1.0: that would walk off the table
        u = np.ascontiguousarray(u).reshape(B, self.T * len(self.cells))  # [B, T * C]
        _invert_kernel(u, self._plan_i, self._plan_f, cdf, guide, flat)
        if self._any_normal:
            c = np.flatnonzero(self._normal)
            x = np.maximum(self._mu[:, c] + self._sd[:, c] * z[:, :, c], 0.0)  # [B, T, Cn]
            x = np.where(self._round[c], np.round(x), x)
            out[:, :, self._node[c], self._sku[c]] = np.where(self._mu[:, c] > 0, x, 0.0)
        return out

    def _chol(self) -> np.ndarray:
        C = len(self.cells)
        corr = np.full((C, C), self.rho) + (1.0 - self.rho) * np.eye(C)
        try:
            return np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise ScenarioError([f"demand.correlation: {self.rho} is not a valid correlation for {C} nodes"]) from None


def _parallel_available() -> bool:
    from invnet.envs.core_jit import parallel_available  # lazy: core_jit imports the network, which imports us

    return parallel_available()


def _inversion_plan(
    tables: tuple[np.ndarray, ...], node: np.ndarray, sku: np.ndarray, N: int, K: int
) -> tuple[np.ndarray, np.ndarray]:
    """One step per discrete (period, cell), period-major: ``plan_i`` [3, P] (uniform index t * C + c, guide base,
    flat output index (t * N + node) * K + sku), ``plan_f`` [2, P] (guide slots m, lowest value - table start)."""
    cell_table, start, length, lo = tables[:4]
    T, C = cell_table.shape
    t, c = np.nonzero(cell_table >= 0)
    j = cell_table[t, c]
    plan_i = np.stack([t * C + c, _GUIDE * start[j] + j, (t * N + node[c]) * K + sku[c]]).astype(np.int64)
    plan_f = np.stack([_GUIDE * length[j], lo[j] - start[j]]).astype(np.float64)
    return plan_i, plan_f


def _nbinom_params(mu: np.ndarray, cv: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """NB(n, p) with mean mu and variance (cv mu)^2: n = mu^2 / (var - mu), p = n / (n + mu).

    Where var <= mu (small seasonal means) n is returned as 0 and callers fall back to Poisson.
    """
    var = (cv * mu) ** 2
    excess = var - mu
    n = np.where(excess > 1e-9, mu**2 / np.where(excess > 1e-9, excess, 1.0), 0.0)
    p = np.where(n > 0, n / np.where(n > 0, n + mu, 1.0), 1.0)
    return n, p


def _discrete_tables(
    mu: np.ndarray, cv: np.ndarray, nb: np.ndarray, skip: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CDF and guide tables of every distinct discrete (distribution, mean, cv) among the ``[T, C]`` cells.

    Returns ``cell_table`` [T, C] (table index, -1 for normal cells), per table start / length / lowest
    value, and the concatenated CDFs (last entry of each exactly 1) and guide tables.
    """
    from scipy import stats

    T, C = mu.shape
    use_nb = nb & (_nbinom_params(mu, cv)[0] > 0)  # NB with variance <= mean falls back to Poisson
    params = np.stack([use_nb.astype(float), mu, np.where(use_nb, cv, 0.0)], axis=-1).reshape(-1, 3)
    keep = ~np.broadcast_to(skip[None, :], (T, C)).reshape(-1)
    uniq, inverse = np.unique(params[keep], axis=0, return_inverse=True)
    cell_table = np.full(T * C, -1, dtype=np.int64)
    cell_table[keep] = inverse.reshape(-1)
    is_nb, m, v = uniq[:, 0] > 0, uniq[:, 1], uniq[:, 2]
    n, p = _nbinom_params(m, v)
    safe_m = np.maximum(m, 1e-300)
    lo = np.where(is_nb, stats.nbinom.ppf(_TAIL, np.maximum(n, 1e-12), p), stats.poisson.ppf(_TAIL, safe_m))
    hi = np.where(is_nb, stats.nbinom.isf(_TAIL, np.maximum(n, 1e-12), p), stats.poisson.isf(_TAIL, safe_m))
    wide = m + 50.0 * np.sqrt(np.where(is_nb, (v * m) ** 2, m)) + 10.0  # if scipy's quantile is not finite
    lo = np.where((m > 0) & np.isfinite(lo), np.maximum(lo - 1, 0), 0).astype(np.int64)
    hi = np.where(m > 0, np.where(np.isfinite(hi), hi, wide), 0).astype(np.int64)
    length = hi - lo + 1
    start = (np.cumsum(length) - length).astype(np.int64)
    which = np.repeat(np.arange(len(uniq)), length)
    k = (np.arange(int(length.sum())) - start[which] + lo[which]).astype(float)
    cdf = np.empty(k.shape)
    nbw = is_nb[which]  # each entry evaluated once, by its own distribution
    cdf[nbw] = stats.nbinom.cdf(k[nbw], n[which][nbw], p[which][nbw])
    cdf[~nbw] = stats.poisson.cdf(k[~nbw], safe_m[which][~nbw])
    cdf[m[which] <= 0] = 1.0  # zero mean: always 0
    cdf[start + length - 1] = 1.0  # the mass beyond 1 - _TAIL joins the last value
    guide = np.empty(_GUIDE * cdf.shape[0] + len(uniq), dtype=np.int32)  # cdf indexes (< 2^31: 16 GiB of cdf)
    _guide_kernel(cdf, start, length, guide)
    return cell_table.reshape(T, C), start, length.astype(np.int64), lo.astype(float), cdf, guide


def sample_lead_times(
    node_ids: Sequence[str], lt_values: np.ndarray, lt_cdf: np.ndarray, periods: int, seeds: Sequence[int], episode: int
) -> np.ndarray:
    """[B, T, N] supplier lead time of an order placed in each period (drawn whether or not one is placed)."""
    u = uniforms(seeds, episode, LEAD_TIME_STREAM, [cell_hash(n) for n in node_ids], periods)  # [B, T, N]
    pick = (u[..., None] > lt_cdf[None, None]).sum(axis=-1)
    pick = np.minimum(pick, lt_values.shape[1] - 1)
    return np.take_along_axis(np.broadcast_to(lt_values, (*u.shape[:2], *lt_values.shape)), pick[..., None], axis=-1)[
        ..., 0
    ]
