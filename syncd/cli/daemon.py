"""`syncd daemon` and `syncd jobs` (issue 5)."""
from __future__ import annotations
