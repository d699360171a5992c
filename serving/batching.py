"""Request coalescing: single-state requests that are ready in the same event-loop turn are answered
by one batched policy call (``act``, reference ``act`` and the core's feasibility step run once on
``[B, ...]`` arrays instead of B times on ``[1, ...]``).

Each request was validated on its own before it joins (a bad request never affects the others), and
keeps the :class:`LoadedPolicy` it started with, so a reload never mixes policies inside a batch.
Rows are independent in every invnet policy, so the answer equals the single-state one.
"""

from __future__ import annotations

import asyncio
from dataclasses import fields
from typing import Any

import numpy as np
from invnet.envs.core import State
from invnet.serving.service import LoadedPolicy, recommend


def stack_states(states: list[State]) -> State:
    """Concatenate batch-of-one States of the same period along the batch axis."""
    first = states[0]
    if len(states) == 1:
        return first
    arrays = {f.name: np.concatenate([getattr(s, f.name) for s in states]) for f in fields(State) if f.name != "t"}
    return State(t=first.t, **arrays)


class Coalescer:
    """Collects ``submit`` calls made in one loop turn and answers them with one ``recommend`` per
    (policy, period) group, at most ``max_batch`` states per call."""

    def __init__(self, max_batch: int = 256) -> None:
        self.max_batch = max_batch
        self._pending: list[tuple[LoadedPolicy, State, np.ndarray, asyncio.Future[dict[str, Any]]]] = []
        self._scheduled = False
        self.calls = 0  # batched recommend calls made (observability and tests)
        self.states = 0

    async def submit(self, lp: LoadedPolicy, state: State, rate: np.ndarray) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending.append((lp, state, rate, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # runs after every request already ready in this turn
        return await fut

    def _flush(self) -> None:
        pending, self._pending, self._scheduled = self._pending, [], False
        groups: dict[tuple[int, int], list[int]] = {}
        for j, (lp, state, _, _) in enumerate(pending):
            groups.setdefault((id(lp), state.t), []).append(j)
        for idx in groups.values():
            for start in range(0, len(idx), self.max_batch):
                chunk = [pending[j] for j in idx[start : start + self.max_batch]]
                live = [c for c in chunk if not c[3].done()]  # a cancelled request (client gone) is skipped
                if not live:
                    continue
                try:
                    results = recommend(
                        live[0][0], stack_states([c[1] for c in live]), np.concatenate([c[2] for c in live])
                    )
                except Exception as e:  # noqa: BLE001 - handed to each waiting request, which reports it
                    for c in live:
                        c[3].set_exception(e)
                    continue
                self.calls += 1
                self.states += len(live)
                for c, r in zip(live, results, strict=True):
                    c[3].set_result(r)
