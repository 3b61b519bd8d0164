"""Helpers shared by the tests, not tests themselves: importable as ``helpers.<module>`` because
``pyproject.toml`` puts ``tests/`` on the path (``pythonpath = ["tests"]``)."""
