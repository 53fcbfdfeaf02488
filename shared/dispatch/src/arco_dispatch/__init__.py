"""Dispatch code shared by the arco dispatcher and sweeper: settings, the canonical envelope
builder, the provider adapters (http push queue, Cloud Tasks, memory) and the service frame
(health, readiness, metrics, ``POST /run`` and loop mode)."""
