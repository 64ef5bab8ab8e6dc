"""`plain_params` (the plain writing, one parameter read without a regex) equals the
general rule, `split_outside` + `parse_params`."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from imc_sidecar.sip.grammar import (
    PLAIN_PARAM,
    PLAIN_PARAMS,
    parse_params,
    plain_params,
    split_outside,
)

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
VALUE_CHARS = TOKEN_CHARS + ":[]/@?&$="
names = st.text(TOKEN_CHARS, min_size=1, max_size=8)
values = st.none() | st.text(VALUE_CHARS, max_size=10)
params_text = st.lists(st.tuples(names, values), max_size=4).map(
    lambda ps: "".join(f";{n}" if v is None else f";{n}={v}" for n, v in ps)
)


def _general(text: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((n, v[1:] if v else None) for n, v in PLAIN_PARAM.findall(text))


@settings(max_examples=500)
@given(params_text | st.text(VALUE_CHARS + ";", max_size=16))
@example(";branch=z9hG4bK-1")
@example(";lr")
@example(";a=")
@example(";a==b")
@example(";a=b=c")
def test_plain_params_equals_general_reading(text: str) -> None:
    if re.fullmatch(PLAIN_PARAMS, text) is None:
        return  # `plain_params` is only given what `PLAIN_PARAMS` matched
    assert plain_params(text) == _general(text)
    # ... and equals the general rule for any writing of parameters
    assert plain_params(text) == parse_params(split_outside(text, ";")[1:], "params")
