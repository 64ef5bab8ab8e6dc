"""A conversation between :class:`~.phones.Phone` users through a proxy, with the
ledger of what each of them must receive.

:meth:`Conversation.say` sends one MESSAGE, checks the final answer, books what each
named recipient must receive (from which URI, which text) and waits until every one of
them has it.  :meth:`Conversation.discrepancies` compares the ledger with everything each
phone took: a copy too many (a duplicate, or a copy to someone no longer in the room) or
one missing shows up there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .phones import Phone, Received
from .sipua import SipMessage


def chat_copy(sender: str, text: str) -> str:
    """A chat text as the members receive it: ``[user]: text``."""
    return f"[{sender}]: {text}"


def joined(user: str) -> str:
    return f"*** [{user}] has joined the room"


def left(user: str) -> str:
    return f"*** [{user}] has left the room"


def invited_by(user: str) -> str:
    return f"*** [{user}] invites you to join the room (send '#accept' or '#reject')"


ROOM_CREATED = "*** Room was created"


class Conversation:
    def __init__(self, phones: Mapping[str, Phone], domain: str) -> None:
        self.phones = phones
        self.domain = domain
        self.expected: dict[str, Counter[tuple[str, str]]] = {
            name: Counter() for name in phones
        }

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    async def say(
        self,
        who: str,
        to_user: str,
        body: str,
        *,
        reaches: Iterable[str] = (),
        text: str | None = None,
        sender: str | None = None,
        status: int = 200,
        timeout: float = 5.0,
    ) -> tuple[SipMessage, dict[str, Received]]:
        """``who`` sends ``body`` to ``sip:to_user@domain``; the answer must be ``status``
        and each of ``reaches`` must then receive ``text`` (default: the chat copy of
        ``body``) from ``sender`` (default: that URI).  Returns the answer and, per
        recipient, the MESSAGE that brought it."""
        ruri = self.uri(to_user)
        reply = await self.phones[who].message(ruri, body, timeout=timeout)
        assert reply.status == status, (
            f"{who} -> {to_user} {body!r}: {reply.start_line}, wanted {status}"
        )
        key = (sender or ruri, chat_copy(who, body) if text is None else text)
        copies = {}
        for user in reaches:
            self.expected[user][key] += 1
            wanted = self.expected[user][key]
            phone = self.phones[user]

            def enough(received: list[Received], key: tuple[str, str] = key,
                       wanted: int = wanted) -> bool:
                return sum((r.sender, r.text) == key for r in received) >= wanted

            await phone.wait_for(enough, timeout)
            copies[user] = [r for r in phone.received if (r.sender, r.text) == key][-1]
        return reply, copies

    def discrepancies(self) -> list[str]:
        """Every (user, from, text) received more or fewer times than booked."""
        problems = []
        for name, phone in self.phones.items():
            got = Counter((r.sender, r.text) for r in phone.received)
            want = self.expected[name]
            for key in sorted(set(got) | set(want)):
                if got[key] != want[key]:
                    problems.append(
                        f"{name} got {got[key]}x, wanted {want[key]}x: {key[0]} {key[1]!r}"
                    )
        return problems
