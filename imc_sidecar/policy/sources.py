"""Who may send SIP to the sidecar: the trusted_sources rule, pure.

The sidecar believes the From header of what it receives, because the front proxy
vouches for it; anyone else who could reach the SIP port could speak for any user.  So
a request from outside the trusted networks is answered 403 and changes nothing, and a
response from outside them is ignored (nobody can forge the 200 of a delivery).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..settings.model import Network

__all__ = ["TrustedSources"]

_KNOWN_MAX = 4096  # answers remembered per source address; bounded against floods


class TrustedSources:
    """Whether a source IP address (as the socket gives it) is in one of the networks.
    IPv4-mapped IPv6 addresses count as their IPv4 address.

    `check(host)` is the hot-path form (a closure over the answer cache: half the cost
    of calling the object); calling the object does the same."""

    __slots__ = ("check", "networks")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        known: dict[str, bool] = {}
        get = known.get
        rule = self._rule

        def check(host: str) -> bool:
            answer = get(host)
            if answer is None:
                answer = rule(host)
                if len(known) >= _KNOWN_MAX:
                    known.clear()
                known[host] = answer
            return answer

        self.check = check

    def __call__(self, host: str) -> bool:
        return self.check(host)

    def _rule(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # no IPv6 zone
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
