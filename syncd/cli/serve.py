"""`syncd serve ENV`: the HTTP record API (issue 3)."""
from __future__ import annotations
