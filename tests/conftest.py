"""Test configuration: tests import helpers from this folder; CPU only, float64 where exact."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
