"""The Celery side of ``--with-celery``: three no-op tasks chained, on the same broker and Redis.

Configured for the same guarantees as the others where Celery has a switch
for it: quorum queue, persistent messages, publisher confirms
(``confirm_publish``), ack after the task ran (``acks_late``), results in Redis
expiring after the retention. The worker reads its settings from ``BENCH_*``
(the benchmark sets them): ``celery -A bench.celery_app worker -Q $BENCH_NS``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.worker.consumer import delayed_delivery
from kombu import Exchange, Queue

# With a quorum queue Celery >= 5.5 declares 28 global quorum queues and 29
# exchanges for ETA tasks (``celery_delayed_*``). The benchmark sends none,
# and must not leave broker-wide objects behind: skip that bootstep.
delayed_delivery.DelayedDelivery.include_if = lambda self, c: False  # type: ignore[method-assign]


def make_app(
    ns: str, amqp_url: str, redis_url: str | None, retention: int, prefetch: int
) -> Celery:
    app = Celery("bench", broker=amqp_url, backend=redis_url)
    app.conf.update(
        task_queues=[
            Queue(
                ns,
                Exchange(ns, type="direct", durable=True),
                routing_key=ns,
                queue_arguments={"x-queue-type": "quorum"},
            )
        ],
        task_default_queue=ns,
        task_default_exchange=ns,
        task_default_routing_key=ns,
        task_default_delivery_mode="persistent",
        task_acks_late=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=retention,
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=prefetch,
        worker_detect_quorum_queues=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )

    @app.task(name="bench.a", shared=False)
    def a(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @app.task(name="bench.b", shared=False)
    def b(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @app.task(name="bench.c", shared=False)
    def c(data: dict[str, Any]) -> dict[str, Any]:
        return data

    return app


app = make_app(
    os.environ.get("BENCH_NS", "bench-celery"),
    os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    int(os.environ.get("BENCH_RETENTION", "600")),
    int(os.environ.get("BENCH_PREFETCH", "8")),
)
