"""Where settings come from, each overriding the one before: defaults, a TOML file,
`IMC_<NAME>` environment variables, `--<name>` flags; and the checks across settings.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from imc_sidecar.store.urls import redact

from .model import Settings, SettingsError
from .values import ADDRESS_LISTS, NAMES, SPECS, BadValue

__all__ = ["add_arguments", "load_settings"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `--config` and one `--<name>` flag per setting (default None: not given)."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file with settings (or IMC_CONFIG)")
    for spec in SPECS:
        flag = "--" + spec.name.replace("_", "-")
        if spec.name in ADDRESS_LISTS:
            parser.add_argument(flag, dest=spec.name, action="append", default=None,
                                metavar=spec.metavar, help=spec.help)
        else:
            parser.add_argument(flag, dest=spec.name, default=None, metavar=spec.metavar,
                                help=spec.help)


def load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Defaults, then the TOML file, then IMC_* variables, then flags; validated."""
    raw: dict[str, tuple[object, str]] = {}
    config = getattr(args, "config", None) or environ.get("IMC_CONFIG") or None
    if config:
        for name, value in _read_toml(config).items():
            raw[name] = (value, os.fspath(config))
    for name in NAMES:
        variable = f"IMC_{name.upper()}"
        if variable in environ:
            raw[name] = (environ[variable], variable)
    for name in NAMES:
        value = getattr(args, name, None)
        if value is not None:
            raw[name] = (value, "--" + name.replace("_", "-"))
    values: dict[str, Any] = {}
    for spec in SPECS:
        if spec.name not in raw:
            continue
        value, source = raw[spec.name]
        try:
            values[spec.name] = spec.parse(value)
        except BadValue as exc:
            raise SettingsError(
                f"{spec.name}: {exc} (got {_shown(spec.name, value)} from {source})"
            ) from None
    settings = Settings(**values)
    if settings.rooms_table == settings.members_table:
        raise SettingsError(
            f"members_table: must differ from rooms_table (both '{settings.rooms_table}')"
        )
    _check_rpc(settings)
    if "trusted_sources" not in raw:
        for listen in settings.sip_listen:
            if not listen.loopback:
                raise SettingsError(
                    f"sip_listen: {listen} is not a loopback address; set trusted_sources "
                    "(IMC_TRUSTED_SOURCES) to the addresses of your front proxies, so that "
                    "nobody else can speak for your users"
                )
    return settings


def _check_rpc(settings: Settings) -> None:
    """HTTP off loopback needs a token; no two sockets may claim the same address."""
    for address in settings.rpc_http:
        if not address.loopback and settings.rpc_token is None:
            raise SettingsError(
                f"rpc_http: {address} is not a loopback address; set rpc_token "
                "(IMC_RPC_TOKEN) so that HTTP clients must send a bearer token"
            )
    seen: dict[str, str] = {}
    claims = [(str(listen), "sip_listen") for listen in settings.sip_listen]
    for name in ("rpc_http", "rpc_dgram", "rpc_binrpc"):
        claims.extend((str(address), name) for address in getattr(settings, name))
    if settings.rpc_fifo:
        claims.append((f"unix:{settings.rpc_fifo}", "rpc_fifo"))
    for where, name in claims:
        if where in seen:
            raise SettingsError(f"{name}: {where} is also used by {seen[where]}")
        seen[where] = name


def _read_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        # (tomllib raises the last two for bytes that are not UTF-8 and for nesting
        # deeper than Python's stack)
        raise SettingsError(f"config file {path}: not valid TOML ({exc})") from None
    for key in data:
        if key not in NAMES:
            close = difflib.get_close_matches(key, NAMES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SettingsError(f"config file {path}: unknown setting '{key}'{hint}")
    return data


def _shown(name: str, value: object) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if name in ("db_url", "history_db_url") and isinstance(value, str):
        value = redact(value)
    if name == "rpc_token":
        return "(hidden)"
    return repr(value)
