"""Test support of the arco reference stack: a dev-only workspace member, never a dependency of
a product package (import-linter forbids it).

- :mod:`arco_testkit.plugin`: the pytest plugin (entry point ``pytest11``) with the database
  fixtures every suite uses (a migrated database per test, SQLite and PostgreSQL) and the
  ``clock`` and ``worker`` fixtures.
- :mod:`arco_testkit.clock`: the one clock origin ``T0``, a settable clock, polling with a
  deadline.
- :mod:`arco_testkit.values`: the tenant, workspace and secrets the suites share.
- :mod:`arco_testkit.facts`: one-transaction fact helpers (apply a fact as a service would) and
  reads of committed state.
- :mod:`arco_testkit.dispatching`: a valid dispatch configuration, a recording worker endpoint
  on loopback, a fake Cloud Tasks transport.
"""
