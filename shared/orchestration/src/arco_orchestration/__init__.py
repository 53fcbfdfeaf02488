"""Persistence and state machine shared by the api, dispatcher and sweeper."""
