"""`SipEndpoint.split_udp` sorts URIs by the transport of their next hop (`_hop`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from imc_sidecar.sip.routing import next_hop

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
def test_split_udp_follows_the_next_hop_of_each(
    request_uris: list[str], proxy: str | None
) -> None:
    def over_udp(uri: str) -> bool:
        hop = next_hop(proxy or uri)
        return isinstance(hop, Peer) and hop.transport == "udp"

    endpoint = SipEndpoint(_config(proxy))
    udp, other = endpoint.split_udp(request_uris)
    assert udp == [u for u in request_uris if over_udp(u)]
    assert other == [u for u in request_uris if not over_udp(u)]
    # Again with the next-hop cache filled.
    assert endpoint.split_udp(request_uris) == (udp, other)
