"""Topic matching as AMQP defines it, for the in-memory exchanges."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["topic_matches"]


@lru_cache(maxsize=1024)
def _words(text: str) -> tuple[str, ...]:
    # RabbitMQ reads an empty key as no words at all, not as one empty word.
    return tuple(text.split(".")) if text else ()


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic binding pattern matches a routing key, as AMQP defines it.

    Args:
        pattern: The binding pattern; words are separated by ``.``, ``*`` stands
            for exactly one word and ``#`` for zero or more.
        routing_key: The routing key of a published message.

    Returns:
        True if the message goes to queues bound by ``pattern``.
    """
    pat, key = _words(pattern), _words(routing_key)
    # reachable[j]: the pattern words consumed so far can match key[:j].
    reachable = [True] + [False] * len(key)
    for word in pat:
        if word == "#":
            for j in range(1, len(key) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            for j in range(len(key), 0, -1):
                reachable[j] = reachable[j - 1] and word in ("*", key[j - 1])
            reachable[0] = False
    return reachable[len(key)]
