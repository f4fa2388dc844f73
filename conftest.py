"""Loads the shared fixtures for tests/ and clients/python/tests/ alike."""

pytest_plugins = ["sidecar_fixtures"]
