"""invnet.evaluation: policies x scenario x seeds -> a tidy frame -> KPIs, statistics, reports.

``evaluate`` (common random numbers) is the only entry point that simulates; :mod:`.kpis`,
:mod:`.stats` and :mod:`.report` only read its frame.
"""

from invnet.evaluation.frames import evaluate

__all__ = ["evaluate"]
