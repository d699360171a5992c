"""Policy names -> constructors. Other modules register their policies here (one place)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invnet.agents.base import Policy
from invnet.agents.simple import DoNothing, OrderUpTo, RandomPolicy
from invnet.envs.network import Network

PolicyFactory = Callable[..., Policy]
_REGISTRY: dict[str, PolicyFactory] = {
    "do_nothing": DoNothing,
    "random": RandomPolicy,
    "order_up_to": OrderUpTo,
}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make ``name`` available to ``make_policy``, the CLI and the server."""
    _REGISTRY[name] = factory


def _load_plugins() -> None:
    """Import modules that register more policies (baselines); missing ones are skipped."""
    import importlib

    for mod in ("invnet.agents.baselines",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def policy_names() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def make_policy(name: str, net: Network, **params: Any) -> Policy:
    """Build a registered policy for ``net``. Raises ValueError naming the policy when unknown."""
    _load_plugins()
    if name not in _REGISTRY:
        raise ValueError(f"policy: unknown policy {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name](net, **params)


def resolve_policy(spec: str, net: Network, **params: Any) -> Policy:
    """A policy from a SPEC: a registered name, a policy bundle path, or an MLflow model URI.

    Raises ValueError (or FileNotFoundError) with a message naming the SPEC when it cannot be loaded.
    """
    from pathlib import Path

    _load_plugins()
    if spec in _REGISTRY:
        return make_policy(spec, net, **params)
    if spec.startswith(("models:/", "runs:/", "mlflow:")):
        from invnet.training.bundle import load_mlflow_policy

        return load_mlflow_policy(spec, net)
    if Path(spec).exists():
        from invnet.training.bundle import load_bundle_policy

        return load_bundle_policy(Path(spec), net)
    raise ValueError(
        f"policy: {spec!r} is neither a known policy ({', '.join(sorted(_REGISTRY))}), an existing bundle path,"
        " nor an MLflow model URI (models:/NAME/VERSION or runs:/RUN_ID/PATH)"
    )
