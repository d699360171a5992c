"""Closed-form level setting: newsvendor / base-stock formulas on lead-time demand.

Each formula names its symbols, the equation and the source (stockpyl style). Timing follows invnet's
event order (``envs/core.py``): an order placed in period t with lead time L is usable for the demand
of period t+L, so an installation level protects ``tau = L + 1`` periods of demand.

Symbols: mu (mean demand per period), sigma (its standard deviation), h (holding cost per unit per
period), p (lost-sale penalty per unit, or backorder cost per unit per period), L (lead time, mean
E[L] and standard deviation sigma_L), tau (protection interval), CR = p / (p + h) (critical ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from invnet.envs.network import Network
from scipy import stats


def critical_ratio(h: float | np.ndarray, p: float | np.ndarray) -> np.ndarray:
    """CR = p / (p + h): the newsvendor critical fractile (Snyder & Shen 2019, eq. 4.16)."""
    h, p = np.asarray(h, dtype=float), np.asarray(p, dtype=float)
    return np.where(p + h > 0, p / np.where(p + h > 0, p + h, 1.0), 0.5)


def normal_loss(z: float | np.ndarray) -> np.ndarray:
    """Standard normal loss function L(z) = E[(Z - z)+] = phi(z) - z (1 - Phi(z)) (Snyder & Shen, eq. C.22)."""
    z = np.asarray(z, dtype=float)
    return stats.norm.pdf(z) - z * stats.norm.sf(z)


def expected_shortage(level: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[(D - S)+] for D ~ Normal(mean, sd): sd * L((S - mean) / sd); (mean - S)+ when sd = 0."""
    level, mean, sd = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (level, mean, sd)))
    safe = np.where(sd > 0, sd, 1.0)
    return np.where(sd > 0, safe * normal_loss((level - mean) / safe), np.maximum(mean - level, 0.0))


def newsvendor_normal(mean: float, sd: float, h: float, p: float) -> tuple[float, float]:
    """Optimal level and expected cost of the normal newsvendor.

    S* = mu + z* sigma, z* = Phi^-1(p / (p + h));  g(S*) = (h + p) sigma phi(z*)
    (Snyder & Shen 2019, eqs. 4.24 and 4.35). Example: Normal(50, 8), h 0.18, p 0.70 -> 56.60, 2.00.
    """
    z = float(stats.norm.ppf(float(critical_ratio(h, p))))
    return mean + z * sd, (h + p) * sd * float(stats.norm.pdf(z))


def newsvendor_cost_normal(level: float, mean: float, sd: float, h: float, p: float) -> float:
    """g(S) = h E[(S - D)+] + p E[(D - S)+] = h (S - mu) + (h + p) sigma L((S - mu)/sigma) (Snyder & Shen, eq. 4.33)."""
    short = float(expected_shortage(level, mean, sd))
    return h * (level - mean) + (h + p) * short


@dataclass(frozen=True)
class LeadTimeDemand:
    """Moments of demand over a protection interval of tau periods with random lead time."""

    mean: float  # mu_LTD = mu * tau
    sd: float  # sigma_LTD
    dist: str  # 'poisson' | 'negative_binomial' | 'normal'

    def quantile(self, q: float) -> float:
        """F^-1(q): the critical-fractile level on lead-time demand."""
        return lead_time_quantile(self.mean, self.sd, self.dist, q)


def lead_time_demand(
    mu: float, sigma: float, tau_mean: float, tau_sd: float = 0.0, dist: str = "normal"
) -> LeadTimeDemand:
    """Demand over tau periods, tau random: mu_LTD = mu E[tau], sigma_LTD = sqrt(E[tau] sigma^2 + mu^2 sigma_tau^2).

    (Silver, Pyke & Peterson 1998, eq. 7.30; Snyder & Shen 2019, sec. 4.3.4.) With tau_sd > 0 a
    Poisson stream is no longer Poisson: it becomes a negative binomial with the same two moments.
    """
    m = mu * tau_mean
    var = tau_mean * sigma**2 + mu**2 * tau_sd**2
    sd = math.sqrt(max(var, 0.0))
    if dist == "poisson" and var > m + 1e-9:
        dist = "negative_binomial"
    return LeadTimeDemand(mean=m, sd=sd, dist=dist)


def lead_time_quantile(mean: float, sd: float, dist: str, q: float) -> float:
    """F^-1(q) of lead-time demand: Poisson(mean); NB with n = m^2/(v-m), p = m/v; Normal(mean, sd).

    NB parametrisation: scipy's nbinom(n, p) has mean n(1-p)/p and variance n(1-p)/p^2.
    """
    if mean <= 0:
        return 0.0
    q = float(min(max(q, 1e-6), 1 - 1e-9))
    var = sd**2
    if dist == "poisson" or (dist == "negative_binomial" and var <= mean + 1e-9):
        return float(stats.poisson.ppf(q, mean))
    if dist == "negative_binomial":
        n, pr = mean**2 / (var - mean), mean / var
        return float(stats.nbinom.ppf(q, n, pr))
    return float(mean + stats.norm.ppf(q) * sd)


# --------------------------------------------------------------------------------------------
# Network-level inputs
# --------------------------------------------------------------------------------------------


def node_demand_moments(net: Network) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Per node and SKU: mean and standard deviation of throughput per period, and its distribution family.

    Throughput = own demand + all downstream demand (``Network.throughput``); variances add (independence
    assumed; the scenario's correlation is ignored here and left to tuning). Poisson variance = mu,
    negative binomial variance = (cv mu)^2, normal variance = sd^2.
    """
    s = net.scenario
    N, K = net.n_nodes, net.n_skus
    mean_own = net.mean_demand.mean(axis=0)  # [N, K]
    var_own = np.zeros((N, K))
    fam = [["none"] * K for _ in range(N)]
    for i, nid in enumerate(net.node_ids):
        for k, sku in enumerate(net.skus):
            spec = s.demand_spec(nid, sku)
            m = mean_own[i, k]
            if spec is None:
                var_own[i, k] = m  # replayed demand: Poisson-like guess
                fam[i][k] = "poisson" if m > 0 else "none"
                continue
            var_own[i, k] = m if spec.dist == "poisson" else ((spec.cv or 0.0) * m) ** 2 if spec.cv else spec.sd**2
            fam[i][k] = spec.dist
    members = net.echelon_members.astype(float)  # [N, N]
    mean = members @ mean_own
    var = members @ var_own
    fams: list[list[str]] = []
    for i in range(N):
        row = []
        for k in range(K):
            kinds = {fam[j][k] for j in range(N) if net.echelon_members[i, j] and fam[j][k] != "none"}
            if "normal" in kinds:
                row.append("normal")
            elif "negative_binomial" in kinds:
                row.append("negative_binomial")
            else:
                row.append("poisson")
        fams.append(row)
    return mean, np.sqrt(var), fams


def lead_time_sd(net: Network) -> np.ndarray:
    """[N] standard deviation of each node's replenishment lead time (0 for lanes)."""
    out = np.zeros(net.n_nodes)
    for i, n in enumerate(net.scenario.nodes):
        if net.is_supplier_fed[i]:
            out[i] = math.sqrt(n.lead_time_var)
    return out


def replenishment_delay(net: Network) -> np.ndarray:
    """[N] R_i: periods from an order placed by node i until its units can serve demand at the stores.

    Timing of ``envs/core.py``: a unit ordered with lead time l (supplier or source lane) is on i's shelf
    for demand l periods later, but a lead-0 delivery lands after shipping, so a node that forwards it
    can ship it one period later (f_i = 1 if l_i = 0). Recursively, with children c weighted by throughput:
    ``R_i = l_i`` for a node without children, else ``R_i = l_i + f_i + mean_c R_c``.
    Serial Snyder & Shen 6.1 in invnet (leads 0, 0, 2): R = (0, 1, 3), echelon intervals (1, 2, 4).
    """
    N = net.n_nodes
    lead = net.lead_time_mean
    out = lead.copy()
    w = net.throughput.sum(axis=1)
    order = sorted(range(N), key=lambda i: int(net.echelon_members[i].sum()))  # fewest descendants first
    for i in order:
        children = [c for c in range(N) if net.source_node[c] == i]
        if children:
            cw = np.array([w[c] for c in children])
            cr = np.array([out[c] for c in children])
            down = float((cw * cr).sum() / cw.sum()) if cw.sum() > 0 else float(cr.mean())
            out[i] = lead[i] + (1.0 if lead[i] == 0 else 0.0) + down
    return out


def installation_interval(net: Network) -> np.ndarray:
    """[N] installation protection interval tau_i = l_i + 1 (+1 for a node that forwards lead-0 deliveries)."""
    has_children = np.array([np.any(net.source_node == i) for i in range(net.n_nodes)])
    lead = net.lead_time_mean
    return lead + 1.0 + (has_children & (lead == 0)).astype(float)


def echelon_lead_time(net: Network) -> np.ndarray:
    """[N] echelon protection interval tau_i = R_i + 1 (:func:`replenishment_delay`).

    Clark & Scarf (1960): echelon i's level covers demand over its lead time plus all downstream lead
    times plus the review period; here the downstream part follows invnet's per-hop timing.
    """
    return replenishment_delay(net) + 1.0


def node_penalty(net: Network) -> np.ndarray:
    """[N, K] shortage penalty that drives a node's level: its own, or the largest in its echelon."""
    members = net.echelon_members
    return np.array([[net.penalty[members[i], k].max() for k in range(net.n_skus)] for i in range(net.n_nodes)])


def base_stock_levels(net: Network, echelon: bool = False) -> np.ndarray:
    """[N, K] analytic order-up-to levels: S = F^-1_{D[tau]}(p / (p + h)).

    Installation (``echelon=False``): tau from :func:`installation_interval` on the node's throughput. Echelon: tau from
    :func:`echelon_lead_time` (Clark & Scarf 1960; the newsvendor heuristic of Shang & Song 2003 uses the
    same fractile form). Lead-time variability enters via sigma_LTD (:func:`lead_time_demand`).
    """
    mean, sd, fams = node_demand_moments(net)
    tau = echelon_lead_time(net) if echelon else installation_interval(net)
    tau_sd = lead_time_sd(net)
    cr = critical_ratio(net.holding, node_penalty(net))  # [N, K]
    out = np.zeros((net.n_nodes, net.n_skus))
    for i in range(net.n_nodes):
        for k in range(net.n_skus):
            ltd = lead_time_demand(mean[i, k], sd[i, k], float(tau[i]), float(tau_sd[i]), fams[i][k])
            out[i, k] = math.ceil(ltd.quantile(float(cr[i, k])) - 1e-9)
    return out


def eoq(net: Network) -> np.ndarray:
    """[N, K] economic order quantity Q = sqrt(2 K mu / h) (Harris 1913), at least 1 unit."""
    mean, _, _ = node_demand_moments(net)
    h = np.maximum(net.holding, 1e-9)
    return np.maximum(np.ceil(np.sqrt(2.0 * net.order_fixed * mean / h)), 1.0)


def s_S_levels(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """([N, K] s, [N, K] S): reorder point s = installation base-stock level, S = s + EOQ.

    The (s, Q)-style approximation of an optimal (s, S) policy (Scarf 1960 for optimality; Silver, Pyke
    & Peterson 1998, sec. 7.8 for the heuristic).
    """
    s = base_stock_levels(net)
    return s, s + eoq(net)


def capped_levels(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """([N, K] S, [N, K] cap): installation level and cap = ceil(mu + sigma) per period (Xin 2021 starting point)."""
    mean, sd, _ = node_demand_moments(net)
    return base_stock_levels(net), np.ceil(mean + sd)


def constant_orders(net: Network) -> np.ndarray:
    """[N, K] constant order per period: the mean throughput (rounded), a starting point for tuning."""
    mean, _, _ = node_demand_moments(net)
    return np.round(mean)
