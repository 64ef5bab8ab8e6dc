"""trusted_sources: which source addresses may send SIP to the sidecar."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from imc_sidecar.policy.sources import TrustedSources

TRUSTED = TrustedSources([ip_network("127.0.0.0/8"), ip_network("::1/128"),
                          ip_network("192.0.2.10/32")])


def test_addresses_in_and_out_of_the_networks() -> None:
    assert TRUSTED("127.0.0.1") and TRUSTED("127.9.8.7") and TRUSTED("::1")
    assert TRUSTED("192.0.2.10") and not TRUSTED("192.0.2.11")
    assert TRUSTED("::ffff:192.0.2.10")  # IPv4-mapped, as a dual-stack socket reports it
    assert not TRUSTED("fe80::1%eth0") and TRUSTED("::1%lo")
    assert not TRUSTED("proxy.example") and not TRUSTED("")


@given(st.ip_addresses() | st.ip_addresses(v=4).map(lambda a: IPv6Address(f"::ffff:{a}")))
def test_the_cached_answer_is_the_networks_answer(address: IPv4Address | IPv6Address) -> None:
    host = str(address)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    expected = any(address in network for network in TRUSTED.networks)
    assert TRUSTED(host) is expected
    assert TRUSTED(host) is expected  # the second time from the cache
