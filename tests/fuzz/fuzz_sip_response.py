"""Target `sip_response`: the SIP parser and the fast response scan on any bytes.

Holds: `parse_message` raises only ParseError (sip_checks.py), and `scan_response`
agrees with the parser (sip_agreement.py).
"""

from __future__ import annotations

from sip_agreement import check_response_scan
from sip_checks import check_parse


def one_input(data: bytes) -> None:
    check_parse(data)
    check_response_scan(data)
