"""``arco-stack conformance``: certify a worker in any language against docs/worker-protocol.md.

The suite plays the dispatcher (real envelopes, real HS256 task tokens it signs itself) and
the callback API (a real HTTP server with programmable answers per scenario), then reports
each scenario as PASS, FAIL, SKIP or INFO with the evidence that decided it.
"""

from arco_stack.conformance.runner import Result, run_suite, select
from arco_stack.conformance.scenarios import SCENARIOS, Scenario, Status
from arco_stack.conformance.suite import SuiteConfig

__all__ = ["SCENARIOS", "Result", "Scenario", "Status", "SuiteConfig", "run_suite", "select"]
