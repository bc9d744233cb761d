"""Who may send what on the events queue: the sender's broker-validated ``user_id``.

RabbitMQ checks that a message's ``user_id`` is the user its connection logged in
as, so the property names the sender. With checking on, the coordinator takes a
reply only from the user of the step's service, and a start, signal, cancel,
retry, pause or resume only from a user allowed to control sagas. Anything else is
dead-lettered ``wrong_sender`` before the saga is touched.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Final, final

from contracts import routes

__all__ = ["WRONG_SENDER", "SenderCheck", "WrongSender"]

WRONG_SENDER: Final = "wrong_sender"
"""The dead-letter reason of a message from a user not allowed to send it."""


class WrongSender(Exception):
    """A message came from a user not allowed to send it (never leaves the runtime)."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SenderCheck:
    """The users allowed to send replies and control messages in one namespace.

    Attributes:
        namespace: The deployment's namespace: default user names are ``{namespace}.{name}``.
        service_users: A service's user when it is not ``{namespace}.{service}``.
        control_users: The users whose control messages are taken; by default
            ``{namespace}.coordinator`` and ``{namespace}.operator``. They also
            move dead letters back, replies included, under their own name, so a
            reply from one of them is taken too: they are trusted as the coordinator is.
    """

    namespace: str = routes.DEFAULT_NAMESPACE
    service_users: Mapping[str, str] = field(default_factory=dict)
    control_users: Collection[str] = ()

    # Derived once: it is read for every control message.
    controllers: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = self.control_users or [
            routes.address(self.namespace, n) for n in ("coordinator", "operator")
        ]
        object.__setattr__(self, "controllers", frozenset(names))

    def service_user(self, service: str) -> str:
        return self.service_users.get(service) or routes.address(self.namespace, service)

    def control(self, user_id: str | None, what: str) -> None:
        """Refuse a control message (``what``) from a user not allowed to control.

        Raises:
            WrongSender: With what is wrong and how to fix it.
        """
        if user_id not in self.controllers:
            raise WrongSender(
                f"{what} from {_who(user_id)}; only {', '.join(sorted(self.controllers))} "
                "may send it (SAGA_CONTROL_USERS)"
            )

    def reply(self, user_id: str | None, service: str | None, step: str) -> None:
        """Refuse a reply for ``step`` (of ``service``; None: no such step) from another user.

        Raises:
            WrongSender: With what is wrong and how to fix it.
        """
        if service is None:
            raise WrongSender(f"reply for unknown step {step!r} from {_who(user_id)}")
        expected = self.service_user(service)
        if user_id != expected and user_id not in self.controllers:
            raise WrongSender(
                f"reply for step {step!r} of service {service!r} from {_who(user_id)}; "
                f"expected user_id {expected!r} (SAGA_SERVICE_USERS maps services to users)"
            )


def _who(user_id: str | None) -> str:
    return f"user {user_id!r}" if user_id else "a sender without user_id"
