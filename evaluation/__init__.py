"""invnet.evaluation: policies x scenario x seeds -> a tidy frame -> KPIs, statistics, reports.

``evaluate`` (common random numbers) is the only entry point that simulates; :mod:`.kpis`,
:mod:`.stats` and :mod:`.report` only read its frame.
"""

from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    # Lazy: `invnet --help` imports this package's commands without paying for pandas.
    if name == "evaluate":
        from invnet.evaluation.frames import evaluate

        return evaluate
    raise AttributeError(name)
