"""Pure helpers of `imc-sidecar rpc`: kamcmd's argument typing and kamcmd's output text.

The text is what Debian's kamcmd 1.5 prints for the same reply over BINRPC, whichever
transport carried it, so scripts written against kamcmd keep working.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

from .binrpc_codec import Struct, double_text, to_plain, wire_double

__all__ = [
    "double_text",
    "format_fault",
    "format_json",
    "format_kamcmd",
    "parse_arg",
    "result_values",
]

_C_SPACE = "[ \t\n\v\f\r]*"  # what strtol/strtod skip before a number
_INT = re.compile(rf"{_C_SPACE}[+-]?[0-9]+")
_DECIMAL = re.compile(rf"{_C_SPACE}[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_HEX = re.compile(
    rf"{_C_SPACE}([+-]?)0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?[0-9]+)?"
)
_SPECIAL = re.compile(rf"{_C_SPACE}[+-]?(inf|infinity|nan)", re.IGNORECASE)


def parse_arg(text: str) -> int | float | str:
    """kamcmd's parse_arg(): an int if strtol takes it all, else a double if strtod
    does, else a string; `s:` forces a string (and is removed).

    One deliberate difference: kamcmd sends "" as the int 0 (strtol accepts an empty
    string); we send an empty string.
    """
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text) or _SPECIAL.fullmatch(text):
        return float(text)
    hexa = _HEX.fullmatch(text)
    if hexa:
        value = float.fromhex(text.strip(" \t\n\v\f\r").lstrip("+-"))
        return -value if hexa[1] == "-" else value
    if text.startswith("s:"):
        return text[2:]
    return text


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):  # ctl sends booleans as INT 0/1
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return double_text(value)
    if value is None:
        return "<null string>"  # ctl's stand-in for a NULL string
    return str(value)


def _members(value: object) -> Iterable[tuple[str | None, object]] | None:
    """The members of a container value, or None for a scalar."""
    if isinstance(value, Struct):
        return value.items
    if isinstance(value, Mapping):
        return ((str(name), member) for name, member in value.items())
    if isinstance(value, list | tuple):
        return ((None, member) for member in value)
    return None


def format_kamcmd(values: Sequence[object]) -> str:
    """Every top-level value the way kamcmd prints a reply: scalars one per line, structs
    as `{` … `}` with members one tab deeper, `name: value` for named members."""
    lines: list[str] = []

    def emit(value: object, depth: int, name: str | None) -> None:
        prefix = "\t" * depth + ("" if name is None else f"{name}: ")
        members = _members(value)
        if members is None:
            lines.append(prefix + _scalar_text(value))
            return
        lines.append(prefix + "{")
        for member_name, member in members:
            emit(member, depth + 1, member_name)
        lines.append("\t" * depth + "}")

    for value in values:
        emit(value, 0, None)
    return "".join(line + "\n" for line in lines)


def format_fault(code: int, message: str) -> str:
    return f"error: {code} - {message}\n"


def _as_binrpc(value: object) -> object:
    if isinstance(value, float):
        return wire_double(value)
    if isinstance(value, dict):
        return {name: _as_binrpc(member) for name, member in value.items()}
    if isinstance(value, list):
        return [_as_binrpc(member) for member in value]
    return value


def result_values(result: object) -> list[object]:
    """A JSON-RPC result as the values a BINRPC reply would carry: an array method's array
    is its values; `{}` means nothing was added; anything else is one value.  Doubles are
    cut to BINRPC's three decimals so the text matches kamcmd's."""
    result = _as_binrpc(result)
    if isinstance(result, list):
        return result
    if isinstance(result, dict) and not result:
        return []
    return [result]


def format_json(value: object) -> str:
    def plain(item: object) -> object:
        return to_plain(item) if isinstance(item, Struct) else item

    def walk(item: object) -> object:
        item = plain(item)
        if isinstance(item, dict):
            return {key: walk(member) for key, member in item.items()}
        if isinstance(item, list):
            return [walk(member) for member in item]
        return item

    return json.dumps(walk(value), indent=2, ensure_ascii=False) + "\n"
