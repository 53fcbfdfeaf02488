"""The arco dispatcher: READY tasks and due retries become canonical envelopes, enqueued
through the configured provider in the same cycle (design D4)."""
