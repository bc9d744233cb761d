"""The replay suite: ``order_versions`` (versions of the example saga) is importable."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
