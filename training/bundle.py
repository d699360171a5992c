"""Policy bundles: a self-contained folder that turns back into a :class:`~invnet.agents.learned.LearnedPolicy`.

Layout (``format: invnet-policy-bundle``, version 1)::

    policy.json     metadata: env id, algo, action mode, visibility, node ids, SKUs, lanes, network
                    fingerprint, observation / action sizes, normalisation clip, residual base policy,
                    training config, evaluation summary
    weights.npz     actor mean network (W0, b0, W1, b1, ...) and observation mean / var
    scenario.yaml   the scenario the policy was trained on

The same folder is logged to MLflow as a pyfunc model (:mod:`invnet.training.pyfunc`); its ``predict``
input and output formats are documented in :func:`state_from_frame` and :func:`action_to_frame`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from invnet.agents.learned import LearnedPolicy, network_fingerprint
from invnet.envs.core import Action, State, observed_state
from invnet.envs.network import Network, compile_network

BUNDLE_FORMAT = "invnet-policy-bundle"
BUNDLE_VERSION = 1


def _lanes(net: Network) -> list[list[Any]]:
    return [
        [net.node_ids[int(f)], net.node_ids[int(t)], int(lt)]
        for f, t, lt in zip(net.lane_from, net.lane_to, net.lane_lead, strict=True)
    ]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder ``tmp`` into place at ``final`` (the old one is removed afterwards)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def scenario_yaml(net: Network) -> str:
    data = net.scenario.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("base_dir", None)
    return yaml.safe_dump(data, sort_keys=False)


def save_bundle(
    path: str | Path,
    net: Network,
    weights: list[tuple[np.ndarray, np.ndarray]],
    obs_norm: dict[str, Any],
    mapper: Any,  # invnet.training.actions.ActionMapper
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a policy bundle folder atomically; returns its path."""
    from invnet.envs import ENV_ID
    from invnet.training.actions import policy_spec

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        arrays = {"obs_mean": np.asarray(obs_norm["mean"]), "obs_var": np.asarray(obs_norm["var"])}
        for i, (w, b) in enumerate(weights):
            arrays[f"W{i}"], arrays[f"b{i}"] = np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32)
        np.savez(tmp / "weights.npz", **arrays)
        sp = mapper.spaces
        info = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "env_id": ENV_ID,
            "scenario": net.scenario.name,
            "action_mode": mapper.mode,
            "visibility": sp.visibility,
            "residual_scale": mapper.residual_scale,
            "base_policy": policy_spec(mapper.base) if mapper.base is not None else None,
            "node_ids": list(net.node_ids),
            "skus": list(net.skus),
            "lanes": _lanes(net),
            "fingerprint": network_fingerprint(net),
            "obs_dim": sp.obs_dim,
            "action_dim": sp.action_dim,
            "layers": len(weights),
            "obs_clip": float(obs_norm["clip"]),
            "obs_eps": float(obs_norm["eps"]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(meta or {}),
        }
        (tmp / "policy.json").write_text(json.dumps(info, indent=2, default=str))
        (tmp / "scenario.yaml").write_text(scenario_yaml(net))
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def bundle_dir(path: str | Path) -> Path:
    """The bundle folder for ``path``: a bundle itself, or a training output folder holding ``bundle/``."""
    p = Path(path)
    for cand in (p, p / "bundle", p / "artifacts" / "bundle"):
        if (cand / "policy.json").exists():
            return cand
    if not p.exists():
        raise FileNotFoundError(f"policy bundle: not found: {path}")
    raise ValueError(f"policy bundle: {path} holds no policy.json (not an invnet policy bundle)")


def read_bundle_info(path: str | Path) -> dict[str, Any]:
    d = bundle_dir(path)
    info = json.loads((d / "policy.json").read_text())
    if info.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"policy bundle: {d} is not an {BUNDLE_FORMAT} (format {info.get('format')!r})")
    if int(info.get("version", 0)) > BUNDLE_VERSION:
        raise ValueError(f"policy bundle: version {info['version']} is newer than supported ({BUNDLE_VERSION})")
    return info


def bundle_network(path: str | Path) -> Network:
    """The network of the scenario stored in the bundle."""
    from invnet.envs.scenario import parse_scenario

    d = bundle_dir(path)
    return compile_network(parse_scenario(yaml.safe_load((d / "scenario.yaml").read_text()), source=str(d)))


def load_bundle_policy(path: str | Path, net: Network | None = None) -> LearnedPolicy:
    """A :class:`LearnedPolicy` for ``net`` (default: the bundle's own scenario).

    Raises ValueError naming the mismatch when the bundle was trained for another network.
    """
    from invnet.training.actions import ActionMapper, policy_from_spec

    d = bundle_dir(path)
    info = read_bundle_info(d)
    if net is None:
        net = bundle_network(d)
    fp = network_fingerprint(net)
    if fp != info["fingerprint"]:
        diffs = []
        for key, have in (("node_ids", list(net.node_ids)), ("skus", list(net.skus)), ("lanes", _lanes(net))):
            if info.get(key) != have:
                diffs.append(f"{key}: bundle {info.get(key)} vs network {have}")
        raise ValueError(
            f"policy bundle {d}: trained for another network (fingerprint {info['fingerprint']} != {fp}; "
            + "; ".join(diffs)
            + ")"
        )
    base = policy_from_spec(info["base_policy"], net) if info.get("base_policy") else None
    mapper = ActionMapper.build(net, info["action_mode"], info["visibility"], base, info.get("residual_scale", 1.0))
    with np.load(d / "weights.npz") as z:
        weights = [(z[f"W{i}"], z[f"b{i}"]) for i in range(int(info["layers"]))]
        norm = {"mean": z["obs_mean"], "var": z["obs_var"], "clip": info["obs_clip"], "eps": info["obs_eps"]}
    meta = {**info, "bundle": str(d)}
    return LearnedPolicy(net, weights, norm, mapper, name=f"learned:{info.get('algo', 'rl')}", meta=meta)


def _mlflow_model_dir(uri: str) -> Path:
    import mlflow
    from invnet.training.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri.removeprefix("mlflow:")))


def load_mlflow_policy(uri: str, net: Network | None = None) -> LearnedPolicy:
    """A :class:`LearnedPolicy` from an MLflow model URI (``models:/NAME/VERSION``, ``runs:/RUN/policy``...)."""
    try:
        local = _mlflow_model_dir(uri)
    except Exception as e:  # noqa: BLE001 - MLflow raises many types; report them as one clear error
        raise ValueError(f"policy: cannot load MLflow model {uri!r}: {e}") from None
    return load_bundle_policy(local, net)


def log_pyfunc_model(path: str | Path, register_as: str | None = None, name: str = "policy") -> str:
    """Log a bundle to the active MLflow run as a pyfunc model; returns the model URI."""
    import logging

    import mlflow
    from invnet.training.pyfunc import PolicyModel

    d = bundle_dir(path)
    # PolicyModel is a small stateless class whose weights travel as the "bundle" artifact: MLflow's
    # CloudPickle caution about python_model objects is noise here.
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=PolicyModel(),
            artifacts={"bundle": str(d)},
            registered_model_name=register_as,
            pip_requirements=["invnet"],
        )
    finally:
        pyfunc_log.setLevel(level)
    return info.model_uri


# ---- pyfunc predict format ------------------------------------------------------------------------
def state_from_frame(net: Network, frame: Any) -> State:
    """A batch of states from a table with one row per (state, node[, SKU]).

    Columns: ``node`` (id, required), ``on_hand`` (required), ``sku`` (default: the first SKU),
    ``batch`` (state index, default 0), ``t`` (period, default 0), ``backlog`` (default 0),
    ``pipeline`` (list, slot j arrives at the start of period t+1+j; default empty),
    ``demand_hist`` (list of recent demand, most recent last; default the mean demand).
    Raises ValueError naming the column or value that is wrong.
    """
    import pandas as pd

    df = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    for col in ("node", "on_hand"):
        if col not in df.columns:
            raise ValueError(f"input: missing column {col!r} (need node, on_hand; optional sku, batch, t, ...)")
    N, K, P = net.n_nodes, net.n_skus, net.pipeline_len
    H = net.scenario.agents.demand_history
    batch = df["batch"].astype(int).to_numpy() if "batch" in df.columns else np.zeros(len(df), dtype=int)
    ids = sorted(set(batch.tolist()))
    pos = {b: i for i, b in enumerate(ids)}
    B = len(ids)
    node_idx = {n: i for i, n in enumerate(net.node_ids)}
    sku_idx = {s: k for k, s in enumerate(net.skus)}
    t = int(df["t"].iloc[0]) if "t" in df.columns else 0
    from invnet.envs.core import initial_state

    s0 = initial_state(net, B, H)
    on_hand, backlog = np.zeros((B, N, K)), np.zeros((B, N, K))
    pipeline = np.zeros((B, N, K, P))
    hist = np.array(s0.demand_hist)
    for r, row in enumerate(df.to_dict("records")):
        if row["node"] not in node_idx:
            raise ValueError(f"input: node {row['node']!r} is not in the network ({', '.join(net.node_ids)})")
        sku = row.get("sku", net.skus[0])
        if sku not in sku_idx:
            raise ValueError(f"input: sku {sku!r} is not in the network ({', '.join(net.skus)})")
        b, i, k = pos[int(batch[r])], node_idx[row["node"]], sku_idx[sku]
        on_hand[b, i, k] = float(row["on_hand"])
        backlog[b, i, k] = float(row.get("backlog", 0.0) or 0.0)
        pipe = row.get("pipeline")
        if pipe is not None and len(np.atleast_1d(pipe)):
            p = np.asarray(pipe, dtype=float).reshape(-1)
            if p.size > P:
                raise ValueError(f"input: pipeline of {row['node']!r} has {p.size} slots, network has {P}")
            pipeline[b, i, k, : p.size] = p
        dh = row.get("demand_hist")
        if dh is not None and len(np.atleast_1d(dh)):
            h = np.asarray(dh, dtype=float).reshape(-1)[-H:]
            hist[b, i, k, H - h.size :] = h
    for name, arr in (("on_hand", on_hand), ("backlog", backlog), ("pipeline", pipeline)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"input: {name} must be finite and >= 0")
    return observed_state(t, on_hand, backlog, pipeline, hist)


def action_to_frame(net: Network, action: Action) -> Any:
    """Rows ``batch, kind ("order" | "transfer"), node, to, sku, quantity``.

    Orders: ``node`` orders from its source (``to`` is the node itself); transfers: ``node`` ships to ``to``.
    """
    import pandas as pd

    rows = []
    B = action.orders.shape[0]
    for b in range(B):
        for i, n in enumerate(net.node_ids):
            for k, s in enumerate(net.skus):
                rows.append((b, "order", n, n, s, float(action.orders[b, i, k])))
        for e in range(net.n_lanes):
            f, t = net.node_ids[int(net.lane_from[e])], net.node_ids[int(net.lane_to[e])]
            for k, s in enumerate(net.skus):
                rows.append((b, "transfer", f, t, s, float(action.transfers[b, e, k])))
    return pd.DataFrame(rows, columns=["batch", "kind", "node", "to", "sku", "quantity"])
