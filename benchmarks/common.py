"""Shared by every benchmark script: the environment record and the JSON writer.

The implementation lives in the package (``vmaedet.envinfo``) so that ``vmaedet bench`` records
exactly the same fields as these scripts.
"""

from __future__ import annotations

import json

from vmaedet.envinfo import REPO_ROOT, environment, write_json

__all__ = ["REPO_ROOT", "environment", "write_json"]

if __name__ == "__main__":  # pragma: no cover - manual check
    print(json.dumps(environment(), indent=2))
