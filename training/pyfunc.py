"""The MLflow pyfunc wrapper of a policy bundle (imports mlflow; kept apart from :mod:`bundle`).

``mlflow.pyfunc.load_model(uri).predict(frame)``: ``frame`` has one row per (state, node[, SKU]) with
columns ``node``, ``on_hand`` and optionally ``sku``, ``batch``, ``t``, ``backlog``, ``pipeline``,
``demand_hist`` (:func:`invnet.training.bundle.state_from_frame`); the result has one row per order and
per lane transfer: ``batch, kind, node, to, sku, quantity`` (:func:`invnet.training.bundle.action_to_frame`).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class PolicyModel(mlflow.pyfunc.PythonModel):
    """Loads the bundle artifact once; ``predict`` maps states to orders and transfers."""

    def load_context(self, context: Any) -> None:
        from invnet.training.bundle import load_bundle_policy

        self.policy = load_bundle_policy(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - MLflow reads hints as a schema
        from invnet.training.bundle import action_to_frame, state_from_frame

        net = self.policy.net
        return action_to_frame(net, self.policy.act(state_from_frame(net, model_input)))
