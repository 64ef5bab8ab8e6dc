"""Rules that read text raise only their own error, whatever the text: long digit runs
(CPython's int() refuses more than 4,300 digits with a ValueError) and non-ASCII digits
included.  The class of bug the fuzz campaign found in parse_uri, Via's rport and the
settings; the atheris targets cover the rest of the input space."""

from __future__ import annotations

import contextlib
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.settings.values import SPECS, BadValue, Spec
from imc_sidecar.sip.grammar import port_number
from imc_sidecar.sip.uri import UriError, parse_uri

digit_runs = st.builds(
    lambda digit, count: digit * count, st.sampled_from("0159\u00b2\u0665"), st.integers(1, 6000)
)
texts = st.text(max_size=30) | digit_runs
PREFIXES = ("sip:a@h:", "sip:h:", "udp:127.0.0.1:", "tcp:[::1]:", "mysql://u@h:", "", " ")


@settings(max_examples=500, deadline=None)
@given(digits=digit_runs)
def test_port_number(digits: str) -> None:
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the oracle reads any number of digits
    try:
        value = int(digits) if digits.isascii() else 0
    finally:
        sys.set_int_max_str_digits(limit)
    assert port_number(digits) == (value if 0 < value < 65536 else None)


@settings(max_examples=1000, deadline=None)
@given(prefix=st.sampled_from(PREFIXES), text=texts, tail=st.sampled_from(["", "/db", ";x"]))
def test_parse_uri_raises_only_uri_error(prefix: str, text: str, tail: str) -> None:
    with contextlib.suppress(UriError):
        parse_uri(prefix + text + tail)


@settings(max_examples=2000, deadline=None)
@given(spec=st.sampled_from(SPECS), prefix=st.sampled_from(PREFIXES), text=texts)
def test_setting_rules_raise_only_bad_value(spec: Spec, prefix: str, text: str) -> None:
    with contextlib.suppress(BadValue):
        spec.parse(prefix + text)
