"""The picture of a saga's trace in the README (docs/trace.svg), made from a real run.

    PYTHONPATH=. python tests/e2e/trace_picture.py docs/trace.svg

starts two coordinator replicas and the example participants on the local
RabbitMQ and Redis (a namespace of its own, deleted after), exporting their
spans over OTLP/HTTP to the receiver of ``otlp.py``; places an order whose card
is declined (a loyalty member's, so points are awarded and revoked), and draws
that saga's spans as a waterfall: one row per span, indented under its parent,
coloured by the process that made it, with the links from the participants'
replies to the coordinator's processing of them. It prints the span tree too.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from otlp import OtlpReceiver, Span, walk

__all__ = ["render_svg", "tree"]

_COLOURS = {"saga-coordinator": "#4c78a8", "saga-participant": "#f58518"}
_OTHER = "#9d9d9d"
_ERROR = "#d62728"
_ROW, _LABEL, _BARS, _TOP, _PAD = 20, 470, 600, 58, 16
_FONT = "font-family='DejaVu Sans Mono, Menlo, Consolas, monospace'"
_SMALL = f"{_FONT} font-size='10'"
_TEXT = f"{_FONT} font-size='12'"


def _tick(total_ms: float) -> float:
    """A round step for about six ticks over ``total_ms``."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if total_ms / step <= 6:
            return step
    return total_ms / 6


def tree(spans: Sequence[Span]) -> str:
    """The spans as an indented tree of ``name [kind, service]`` lines."""
    return "\n".join(
        f"{'  ' * depth}{span.name} [{span.kind.lower()}, {span.service}]"
        for depth, span in walk(spans)
    )


def render_svg(spans: Sequence[Span], title: str) -> str:
    """A waterfall of ``spans`` (one trace) as an SVG document."""
    rows = list(walk(spans))
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total_ms = max((end - start) / 1e6, 0.001)
    scale = _BARS / total_ms
    height = _TOP + len(rows) * _ROW + 60
    width = _LABEL + _BARS + 90
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        "<defs><marker id='arrow' viewBox='0 0 6 6' refX='6' refY='3' markerWidth='6' "
        "markerHeight='6' orient='auto'><path d='M0,0 L6,3 L0,6 z' fill='#555'/></marker></defs>",
        f"<text x='{_PAD}' y='22' {_FONT} font-size='14' font-weight='bold'>{escape(title)}</text>",
    ]

    def x(ns: int) -> float:
        return _LABEL + (ns - start) / 1e6 * scale

    step = _tick(total_ms)
    t = 0.0
    while t <= total_ms + 1e-9:
        px = _LABEL + t * scale
        out.append(
            f"<line x1='{px:.1f}' y1='{_TOP - 8}' x2='{px:.1f}' y2='{_TOP + len(rows) * _ROW}' "
            "stroke='#e6e6e6'/>"
        )
        out.append(
            f"<text x='{px:.1f}' y='{_TOP - 12}' {_SMALL} fill='#666' "
            f"text-anchor='middle'>{t:g} ms</text>"
        )
        t += step

    where: dict[str, tuple[float, float, float]] = {}  # span id -> (x start, x end, y middle)
    for i, (depth, span) in enumerate(rows):
        y = _TOP + i * _ROW
        if i % 2:
            out.append(f"<rect x='0' y='{y}' width='{width}' height='{_ROW}' fill='#f7f7f7'/>")
        colour = _COLOURS.get(span.service, _OTHER)
        failed = span.status == "ERROR"
        label = f"{span.name}"
        out.append(
            f"<text x='{_PAD + depth * 14}' y='{y + 14}' {_TEXT} "
            f"fill='{_ERROR if failed else '#222'}'>{escape(label)}</text>"
        )
        # Which replica took each input: the point of one trace across processes.
        kind = span.kind.lower() + (f" {span.instance}" if span.instance else "")
        out.append(
            f"<text x='{_LABEL - 8}' y='{y + 14}' {_SMALL} fill='#888' "
            f"text-anchor='end'>{kind}</text>"
        )
        x0, x1 = x(span.start_ns), x(span.end_ns)
        bar = max(x1 - x0, 2.0)
        stroke = f" stroke='{_ERROR}' stroke-width='2'" if failed else ""
        out.append(
            f"<rect x='{x0:.1f}' y='{y + 4}' width='{bar:.1f}' height='{_ROW - 8}' "
            f"rx='2' fill='{colour}'{stroke}><title>{escape(_hover(span))}</title></rect>"
        )
        took = (span.end_ns - span.start_ns) / 1e6
        out.append(
            f"<text x='{x0 + bar + 4:.1f}' y='{y + 14}' {_SMALL} fill='#666'>{took:.1f} ms</text>"
        )
        where[span.span_id] = (x0, x0 + bar, y + _ROW / 2)

    for span in spans:
        for link in span.links:
            if link.span_id in where and span.span_id in where:
                fx, _, fy = where[link.span_id]
                tx, _, ty = where[span.span_id]
                out.append(
                    f"<path d='M{fx:.1f},{fy:.1f} C{fx - 24:.1f},{fy:.1f} {tx - 24:.1f},{ty:.1f} "
                    f"{tx:.1f},{ty:.1f}' fill='none' stroke='#555' stroke-dasharray='3,3' "
                    "marker-end='url(#arrow)'/>"
                )

    y = _TOP + len(rows) * _ROW + 28
    legend = [
        ("saga-coordinator", _COLOURS["saga-coordinator"]),
        ("saga-participant", _COLOURS["saga-participant"]),
    ]
    lx = _PAD
    for name, colour in legend:
        out.append(f"<rect x='{lx}' y='{y - 10}' width='14' height='12' rx='2' fill='{colour}'/>")
        out.append(f"<text x='{lx + 20}' y='{y}' {_TEXT}>{name}</text>")
        lx += 190
    out.append(
        f"<rect x='{lx}' y='{y - 10}' width='14' height='12' rx='2' fill='white' "
        f"stroke='{_ERROR}' stroke-width='2'/>"
    )
    out.append(f"<text x='{lx + 20}' y='{y}' {_TEXT}>status error</text>")
    lx += 150
    out.append(
        f"<path d='M{lx},{y - 4} L{lx + 24},{y - 4}' stroke='#555' stroke-dasharray='3,3' "
        "marker-end='url(#arrow)'/>"
    )
    out.append(f"<text x='{lx + 30}' y='{y}' {_TEXT}>link (reply sent -> processed)</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _hover(span: Span) -> str:
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(span.attributes.items()))
    who = span.service + (f" {span.instance}" if span.instance else "")
    return f"{span.name} ({span.kind.lower()}, {who}) {attributes}"


async def _run(out: Path) -> None:
    from procs import Deployment, poll, servers_up
    from saga_traces import incomplete, of_saga
    from workload import SAGA, Order

    from coordinator.service import open_client

    servers_up()
    order = Order("trace-picture", "declined", member=True)
    with OtlpReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp))
        deployment.env = {k: v for k, v in deployment.env.items() if not k.startswith("OTEL_")}
        deployment.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        deployment.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
        try:
            for n in range(2):
                env = {"OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id=replica-{n}"}
                deployment.coordinator(env=env)
            deployment.participant(env={"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=worker-0"})
            await deployment.wait_ready(coordinators=2, participants=1)
            async with open_client(deployment.settings) as client:
                await client.start(SAGA, order.input(), order.id)
                state = await client.wait(order.id, timeout=60)
            assert state is not None and state.terminal, f"the saga did not end: {state}"

            async def arrived() -> list[Span] | None:
                spans = of_saga(receiver.spans(), order.id)
                return None if incomplete(spans, SAGA) else spans

            spans = await poll("the saga's spans", arrived, timeout=30)
        except BaseException:
            deployment.dump_logs()
            raise
        finally:
            await deployment.stop_all()
            await deployment.cleanup()
    title = f"saga {SAGA} ({state.status}): a declined card, points awarded then revoked"
    out.write_text(render_svg(spans, title))
    print(tree(spans))
    print(f"{len(spans)} spans drawn in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: trace_picture.py OUT.svg")
    # Run as a script, its own directory is on the path; the suite's servers.py is one up.
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
    asyncio.run(_run(Path(sys.argv[1])))
