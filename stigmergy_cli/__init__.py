"""stigmergy: many coding agents on one git repository, coordinated through .stigmergy/."""

from __future__ import annotations

__version__ = "0.1.0"
