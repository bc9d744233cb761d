"""The order saga as the end-to-end suite deploys it for outages: each step waits
two minutes for a reply instead of ten seconds.

The tests that kill the broker or a participant check that every saga still
ends as its input says; with the example's 10 s, a busy machine's broker
restart (16 s has been seen) or a participant restart plus the 5 s lease would
time steps out and rightly compensate, so the check would measure the
machine's speed, not the product. Two minutes covers the injected outages
with room to spare and stays inside the tests' waits (wait_all: 150-180 s).
Same name and version as the example: the participants and clients do not
tell them apart. Run with ``saga run --saga patient_orders:saga``.
"""

from __future__ import annotations

from datetime import timedelta

from coordinator.examples.orders.saga import build

OUTAGE_PROOF_TIMEOUT = timedelta(minutes=2)

saga = build(step_timeout=OUTAGE_PROOF_TIMEOUT)
