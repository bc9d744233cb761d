"""Failures per test over the rounds of ``make soak``: ``python tests/tally.py round-*.xml``.

Reads the JUnit XML that pytest writes for each round and prints, for every
test that failed or errored at least once, how many rounds it failed and the
first two lines of its first failure; exits 1 if any did.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter


def main(paths: list[str]) -> int:
    failures: Counter[str] = Counter()
    first: dict[str, str] = {}
    runs: Counter[str] = Counter()
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            runs[name] += 1
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                failures[name] += 1
                lines = [ln for ln in (bad.get("message") or "").splitlines() if ln.strip()]
                first.setdefault(name, " | ".join(lines[:2])[:200])
    print(f"{len(paths)} rounds, {len(runs)} tests")
    for name, n in failures.most_common():
        print(f"{n}/{runs[name]} failed  {name}\n      {first[name]}")
    if not failures:
        print("0 failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
