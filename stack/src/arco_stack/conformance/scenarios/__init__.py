"""The scenarios: one rule of docs/worker-protocol.md each, with the evidence that decided it.

Every scenario dispatches its own attempts (a run of its own), so they run side by side. The
``final`` ones look at the traffic of every other scenario and run after them. Importing the
topic modules registers their scenarios.
"""

from arco_stack.conformance.scenarios import attempts, dispatch, retries
from arco_stack.conformance.scenarios.base import SCENARIOS, Scenario, Status, Verdict

# Report order: the dispatch checks, then running a task, then retries and the whole traffic.
_TOPICS = [dispatch.__name__, attempts.__name__, retries.__name__]
SCENARIOS.sort(key=lambda scenario: _TOPICS.index(scenario.run.__module__))

__all__ = ["SCENARIOS", "Scenario", "Status", "Verdict"]
