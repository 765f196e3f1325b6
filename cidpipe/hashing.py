"""Content hashes of JSON-able values: stage ids and recipe ids (a leaf module: imports nothing of ours)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def hash_config(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
