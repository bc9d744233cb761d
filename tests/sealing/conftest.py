"""The sealing tests import the end-to-end suite's throwaway-server helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
