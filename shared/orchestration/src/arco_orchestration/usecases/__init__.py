"""Use cases of the run API: one function per thing a user asks, each in its own transaction.

The HTTP layer parses and authorises, calls one of these, and serialises the answer; the rules
(planning, run keys, idempotent deploys, cancellation) live here and below, never in a route.
A refusal is a :class:`~arco_orchestration.usecases.errors.Rejected` carrying its status.
"""
