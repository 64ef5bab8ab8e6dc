"""`SipEndpoint.split_udp` sorts URIs exactly as `next_hop_transport` says of each."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.sip.endpoint import EndpointConfig, SipEndpoint

uris = st.sampled_from(
    [
        "sip:a@127.0.0.1",
        "sip:b@127.0.0.2:5070",
        "sip:c@host;transport=tcp",
        "sip:c@host;transport=TCP",
        "sip:d@host;transport=tls",
        "sips:e@host",
        "sip:f@[::1]:5061",
        "tel:+123",
        "sip:",
        "not a uri",
        "sip:g@host;transport=udp",
    ]
) | st.text(max_size=20)

proxies = st.sampled_from(
    [None, "sip:127.0.0.1:5060", "sip:proxy;transport=tcp", "sip:proxy;transport=udp"]
)


def _config(proxy: str | None) -> EndpointConfig:
    return EndpointConfig(via_address={"udp": ("127.0.0.1", 5060)}, outbound_proxy=proxy)


@settings(max_examples=300)
@given(st.lists(uris, max_size=12), proxies)
def test_split_udp_is_next_hop_transport_of_each(
    request_uris: list[str], proxy: str | None
) -> None:
    endpoint = SipEndpoint(_config(proxy))
    udp, other = endpoint.split_udp(request_uris)
    # Twice: first with an empty next-hop cache, then with it filled.
    for _ in range(2):
        fresh = SipEndpoint(_config(proxy))
        assert udp == [u for u in request_uris if fresh.next_hop_transport(u) == "udp"]
        assert other == [u for u in request_uris if fresh.next_hop_transport(u) != "udp"]
        assert endpoint.split_udp(request_uris) == (udp, other)
