"""Target `sip_request`: the SIP parser and the fast request scan on any bytes.

Holds: `parse_message` raises only ParseError, an accepted request can be answered and
routed (sip_checks.py), and `scan_request` agrees with the parser (sip_agreement.py).
"""

from __future__ import annotations

from sip_agreement import check_request_scan
from sip_checks import check_parse


def one_input(data: bytes) -> None:
    check_parse(data)
    check_request_scan(data)
