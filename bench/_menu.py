"""Every system the benchmark can run, by the name ``--systems`` takes."""

from __future__ import annotations

from bench._floor_system import Floor
from bench._systems import Ours, System
from bench._variants import (
    OursBaseline,
    OursNoBreakers,
    OursNoMetrics,
    OursNoStarted,
    OursRawParticipant,
    OursSigned,
)

__all__ = ["SYSTEMS"]


def _observed() -> dict[str, type[System]]:
    from bench._observed import OursFull, OursTraced

    return {OursTraced.name: OursTraced, OursFull.name: OursFull}


def _celery() -> type[System]:
    from bench._celery import CeleryChain

    return CeleryChain


SYSTEMS: dict[str, type[System]] = {
    "floor": Floor,
    "ours": Ours,
    "ours-rawp": OursRawParticipant,
    "ours-base": OursBaseline,
    "ours-nostart": OursNoStarted,
    "ours-nobreakers": OursNoBreakers,
    "ours-nometrics": OursNoMetrics,
    "ours-signed": OursSigned,
    "celery": _celery(),
    **_observed(),
}
