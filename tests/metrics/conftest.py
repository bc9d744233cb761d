"""The metrics tests import their support modules from this directory, and the
end-to-end suite's process and throwaway-server helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
