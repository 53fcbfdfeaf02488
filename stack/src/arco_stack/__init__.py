"""Operator CLI of the arco reference stack."""
