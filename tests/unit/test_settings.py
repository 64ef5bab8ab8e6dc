"""Settings: Kamailio's imc modparams from defaults, TOML, IMC_* variables and flags."""

from __future__ import annotations

import argparse
from ipaddress import ip_network
from pathlib import Path

import pytest

from imc_sidecar.settings import (
    Listen,
    RpcAddress,
    Settings,
    SettingsError,
    add_arguments,
    load_settings,
)


def _load(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(argv or []), env or {})


def _error(argv: list[str] | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        _load(argv, env)
    return str(info.value)


def _toml(tmp_path: Path, body: str) -> str:
    path = tmp_path / "imc.toml"
    path.write_text(body)
    return str(path)


def test_defaults() -> None:
    s = _load()
    assert s == Settings()
    assert s.db_url == "sqlite:///imc-sidecar.sqlite"
    assert s.db_mode == 2
    assert (s.rooms_table, s.members_table) == ("imc_rooms", "imc_members")
    assert s.hash_size == 4
    assert s.imc_cmd_start_char == "#"
    assert s.outbound_proxy is None
    assert s.extra_hdrs == ""
    assert (s.create_on_join, s.check_on_create) == (True, False)
    assert s.sip_listen == (Listen("udp", "127.0.0.1", 5090), Listen("tcp", "127.0.0.1", 5090))
    assert all(listen.port != 5060 for listen in s.sip_listen)
    assert s.log_level == "info"


def test_every_setting_has_a_flag_and_a_variable() -> None:
    argv = ["--db-url", "mysql://u@h/k", "--db-mode", "0", "--rooms-table", "r",
            "--members-table", "m", "--hash-size", "6", "--imc-cmd-start-char", "!",
            "--outbound-proxy", "sip:127.0.0.1:5060;transport=tcp", "--extra-hdrs", "X-A: 1",
            "--create-on-join", "0", "--check-on-create", "1",
            "--sip-listen", "udp:0.0.0.0:5070", "--log-level", "DEBUG",
            "--trusted-sources", "192.0.2.10,10.0.0.0/8"]
    by_flags = _load(argv)
    env = {"IMC_DB_URL": "mysql://u@h/k", "IMC_DB_MODE": "0", "IMC_ROOMS_TABLE": "r",
           "IMC_MEMBERS_TABLE": "m", "IMC_HASH_SIZE": "6", "IMC_IMC_CMD_START_CHAR": "!",
           "IMC_OUTBOUND_PROXY": "sip:127.0.0.1:5060;transport=tcp",
           "IMC_EXTRA_HDRS": "X-A: 1", "IMC_CREATE_ON_JOIN": "0", "IMC_CHECK_ON_CREATE": "1",
           "IMC_SIP_LISTEN": "udp:0.0.0.0:5070", "IMC_LOG_LEVEL": "DEBUG",
           "IMC_TRUSTED_SOURCES": "192.0.2.10,10.0.0.0/8"}
    by_env = _load(env=env)
    expected = Settings(
        db_url="mysql://u@h/k", db_mode=0, rooms_table="r", members_table="m", hash_size=6,
        imc_cmd_start_char="!", outbound_proxy="sip:127.0.0.1:5060;transport=tcp",
        extra_hdrs="X-A: 1\r\n", create_on_join=False, check_on_create=True,
        sip_listen=(Listen("udp", "0.0.0.0", 5070),), log_level="debug",
        trusted_sources=(ip_network("192.0.2.10/32"), ip_network("10.0.0.0/8")),
    )
    assert by_flags == expected
    assert by_env == expected


def test_precedence_toml_then_env_then_flags(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'hash_size = 5\nlog_level = "warning"\ndb_mode = 0\n')
    s = _load(["--config", config, "--hash-size", "7"],
              {"IMC_HASH_SIZE": "6", "IMC_LOG_LEVEL": "error"})
    assert (s.hash_size, s.log_level, s.db_mode) == (7, "error", 0)


def test_config_from_environment(tmp_path: Path) -> None:
    config = _toml(tmp_path, "hash_size = 9\n")
    assert _load(env={"IMC_CONFIG": config}).hash_size == 9


def test_toml_native_types(tmp_path: Path) -> None:
    config = _toml(tmp_path, """
db_url = "postgres://postgres@127.0.0.1/kamailio"
create_on_join = false
check_on_create = 1
sip_listen = ["udp:127.0.0.1:5091", "tcp:[::1]:5091"]
extra_hdrs = '''
X-Chat: imc
Priority: normal
'''
""")
    s = _load(["--config", config])
    assert (s.create_on_join, s.check_on_create) == (False, True)
    assert s.sip_listen == (Listen("udp", "127.0.0.1", 5091), Listen("tcp", "::1", 5091))
    assert s.extra_hdrs == "X-Chat: imc\r\nPriority: normal\r\n"


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    config = _toml(tmp_path, "hash_sise = 5\n")
    message = _error(["--config", config])
    assert message == (
        f"config file {config}: unknown setting 'hash_sise'; did you mean 'hash_size'?")


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    assert "config file" in _error(["--config", str(tmp_path / "nope.toml")])
    config = _toml(tmp_path, "hash_size = \n")
    assert "not valid TOML" in _error(["--config", config])
    # found by the fuzz campaign: tomllib raises these, not TOMLDecodeError
    config = _toml(tmp_path, "sip_listen = " + "[" * 2000 + "]" * 2000 + "\n")
    assert "not valid TOML" in _error(["--config", config])
    (tmp_path / "latin1.toml").write_bytes(b'db_url = "\xff"\n')
    assert "not valid TOML" in _error(["--config", str(tmp_path / "latin1.toml")])


def test_error_names_setting_value_and_source(tmp_path: Path) -> None:
    assert _error(env={"IMC_HASH_SIZE": "x"}) == (
        "hash_size: must be an integer between 1 and 20 (got 'x' from IMC_HASH_SIZE)")
    assert _error(["--hash-size", "0"]) == (
        "hash_size: must be an integer between 1 and 20 (got '0' from --hash-size)")
    config = _toml(tmp_path, "hash_size = 21\n")
    assert _error(["--config", config]) == (
        f"hash_size: must be an integer between 1 and 20 (got 21 from {config})")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("db_mode", "1", "must be 0 (memory only) or 2 (write-through)"),
        ("db_mode", "3", "must be 0 (memory only) or 2"),
        ("db_url", "text:///etc/kamailio", "unsupported database scheme 'text'"),
        ("rooms_table", "Imc Rooms", "lower-case SQL table name"),
        ("rooms_table", "version", "other than 'version'"),
        ("members_table", "x" * 33, "at most 32 characters"),
        ("hash_size", "1.5", "integer between 1 and 20"),
        ("imc_cmd_start_char", "", "non-empty"),
        ("imc_cmd_start_char", " ", "non-empty string without spaces"),
        ("outbound_proxy", "proxy.example", "must be a SIP URI"),
        ("outbound_proxy", "sips:proxy.example", "TLS is not supported"),
        ("outbound_proxy", "sip:proxy.example;transport=tls", "transport must be udp or tcp"),
        ("extra_hdrs", "no colon", "line 1 ('no colon'): each line must be 'Name: value'"),
        ("extra_hdrs", r"X-A: 1\r\n\r\nX-B: 2", "line 2 (''): each line must be"),
        ("extra_hdrs", "Content-Length: 0", "written by the server itself"),
        ("extra_hdrs", "X|Y: 1", "'X|Y' is not a valid SIP header name"),
        ("extra_hdrs", "X-A: a\x01b", "control characters are not allowed"),
        ("extra_hdrs", "X-Long: " + "a" * 1020, "too long: with imc's own headers it takes"),
        ("create_on_join", "2", "must be 0 or 1"),
        ("check_on_create", "maybe", "must be 0 or 1"),
        ("sip_listen", "sctp:127.0.0.1:5090", "must look like udp:127.0.0.1:5090"),
        ("sip_listen", "udp:127.0.0.1:70000", "must look like"),
        # found by the fuzz campaign: int() raised ValueError instead of the one line
        ("sip_listen", "udp:127.0.0.1:\u00b2", "must look like"),
        ("sip_listen", "udp:127.0.0.1:" + "1" * 5000, "must look like"),
        ("hash_size", "1" * 5000, "must be an integer between 1 and 20"),
        ("outbound_proxy", "sip:127.0.0.1:" + "1" * 5000, "port out of range"),
        ("sip_listen", "udp:bad host:5090", "must look like"),
        ("sip_listen", "", "needs at least one address"),
        ("sip_listen", "udp:127.0.0.1:5090,udp:127.0.0.1:5090", "listed twice"),
        ("log_level", "verbose", "must be one of debug, info, warning, error, critical"),
        ("trusted_sources", "", "needs at least one address or network"),
        ("max_body", "-1", "must be a number of bytes from 0 (any) to 1048576"),
        ("sender_rate", "nan", "must be a number of texts per second"),
        ("sender_rate", "-2", "must be a number of texts per second"),
        ("sender_burst", "0", "must be an integer from 1 to 1000000"),
        ("trusted_sources", "10.0.0.1/8", "must be an IP address or a network"),
        ("trusted_sources", "proxy.example", "must be an IP address or a network"),
    ],
)
def test_bad_values(name: str, value: str, message: str) -> None:
    variable = f"IMC_{name.upper()}"
    error = _error(env={variable: value})
    assert error.startswith(f"{name}: ")
    assert message in error
    assert error.endswith(f" from {variable})")


def test_limits() -> None:
    s = _load(env={"IMC_MAX_BODY": "2048", "IMC_SENDER_RATE": "0.5", "IMC_SENDER_BURST": "10"})
    assert (s.max_body, s.sender_rate, s.sender_burst) == (2048, 0.5, 10)
    assert (_load().max_body, _load().sender_rate, _load().sender_burst) == (65536, 1000.0, 5000)


def test_sip_tcp_limits(tmp_path: Path) -> None:
    s = _load()
    assert (s.sip_tcp_max_connections, s.sip_tcp_max_per_source) == (4096, 256)
    assert (s.sip_tcp_idle_timeout, s.sip_tcp_max_buffer) == (120.0, 1048576)
    s = _load(["--config", _toml(tmp_path, "sip_tcp_idle_timeout = 2\n"),
               "--sip-tcp-max-connections", "0", "--sip-tcp-max-buffer", "65536"],
              {"IMC_SIP_TCP_MAX_PER_SOURCE": "7"})
    assert (s.sip_tcp_max_connections, s.sip_tcp_max_per_source) == (0, 7)
    assert (s.sip_tcp_idle_timeout, s.sip_tcp_max_buffer) == (2.0, 65536)
    for name, value, says in [
        ("sip_tcp_max_connections", "-1", "from 0 (no limit) to 1000000"),
        ("sip_tcp_max_per_source", "lots", "from 0 (no limit) to 1000000"),
        ("sip_tcp_idle_timeout", "0.5", "seconds from 1 to 86400"),
        ("sip_tcp_max_buffer", "1000", "bytes from 65536 to 1073741824"),
    ]:
        error = _error(env={f"IMC_{name.upper()}": value})
        assert error.startswith(f"{name}: ") and says in error, error


def test_a_sip_port_off_loopback_needs_trusted_sources() -> None:
    error = _error(env={"IMC_SIP_LISTEN": "udp:0.0.0.0:5090"})
    assert error.startswith("sip_listen: udp:0.0.0.0:5090 is not a loopback address; set "
                            "trusted_sources")
    settings = _load(env={"IMC_SIP_LISTEN": "udp:0.0.0.0:5090",
                          "IMC_TRUSTED_SOURCES": "192.0.2.10"})
    assert settings.trusted_sources == (ip_network("192.0.2.10/32"),)
    # On loopback the default (the loopback networks) needs no word.
    assert _load().trusted_sources == (ip_network("127.0.0.0/8"), ip_network("::1/128"))


def test_tables_must_differ() -> None:
    assert "must differ" in _error(env={"IMC_ROOMS_TABLE": "t", "IMC_MEMBERS_TABLE": "t"})


def test_toml_type_errors(tmp_path: Path) -> None:
    config = _toml(tmp_path, "hash_size = true\n")
    assert "hash_size: must be an integer" in _error(["--config", config])
    config = _toml(tmp_path, "db_url = 5\n")
    assert "db_url: must be a string" in _error(["--config", config])


def test_password_never_shown() -> None:
    error = _error(env={"IMC_DB_URL": "oracle://kamailio:s3cret@db/k"})
    assert "s3cret" not in error
    assert "oracle://kamailio:***@db/k" in error
    settings = _load(env={"IMC_DB_URL": "mysql://kamailio:s3cret@db/k"})
    assert settings.db_url == "mysql://kamailio:s3cret@db/k"  # the real value is kept
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in "\n".join(settings.describe())


@pytest.mark.parametrize(
    ("value", "block"),
    [
        (r"X-A: 1\r\nX-B: 2", "X-A: 1\r\nX-B: 2\r\n"),
        (r"X-A: 1\nX-B: 2\n", "X-A: 1\r\nX-B: 2\r\n"),
        ("X-A: 1\r\nX-B: 2\r\n", "X-A: 1\r\nX-B: 2\r\n"),  # real line breaks
        ("X-A: 1\nX-B: 2", "X-A: 1\r\nX-B: 2\r\n"),
        (r"X-Path: C:\\dir", "X-Path: C:\\dir\r\n"),  # \\ is one backslash
        ("", ""),
    ],
)
def test_extra_hdrs_line_breaks(value: str, block: str) -> None:
    assert _load(env={"IMC_EXTRA_HDRS": value}).extra_hdrs == block
    assert _load(["--extra-hdrs", value]).extra_hdrs == block


def test_sip_listen_forms() -> None:
    s = _load(["--sip-listen", "udp:127.0.0.1:5091,tcp:127.0.0.2",
               "--sip-listen", "[::1]:5093", "--sip-listen", "TCP:localhost:5094"])
    assert [str(listen) for listen in s.sip_listen] == [
        "udp:127.0.0.1:5091",
        "tcp:127.0.0.2:5090",  # port defaults to 5090
        "udp:[::1]:5093",  # no transport: both, like Kamailio's listen=
        "tcp:[::1]:5093",
        "tcp:localhost:5094",
    ]
    env = {"IMC_SIP_LISTEN": "udp:10.0.0.1:5095, tcp:10.0.0.1:5095",
           "IMC_TRUSTED_SOURCES": "10.0.0.2"}
    assert _load(env=env).sip_listen == (
        Listen("udp", "10.0.0.1", 5095), Listen("tcp", "10.0.0.1", 5095))


def test_empty_outbound_proxy_means_unset(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'outbound_proxy = "sip:127.0.0.1:5060"\n')
    assert _load(["--config", config]).outbound_proxy == "sip:127.0.0.1:5060"
    assert _load(["--config", config], {"IMC_OUTBOUND_PROXY": ""}).outbound_proxy is None


def test_start_char_kept_whole() -> None:
    # Kamailio matches only the first character but echoes the whole string.
    assert _load(env={"IMC_IMC_CMD_START_CHAR": "##"}).imc_cmd_start_char == "##"


def test_namespace_without_our_flags() -> None:
    # A sub-command parser that never called add_arguments still works.
    assert load_settings(argparse.Namespace(), {"IMC_HASH_SIZE": "3"}).hash_size == 3


def test_flags_default_to_none() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = vars(parser.parse_args([]))
    assert set(args) >= {"config", "db_url", "db_mode", "sip_listen", "imc_cmd_start_char"}
    assert all(value is None for value in args.values())


# -- admin RPC -------------------------------------------------------------------------


def test_rpc_defaults_are_loopback_and_clear_of_kamailio() -> None:
    s = _load()
    assert s.rpc_http == (RpcAddress("tcp", "127.0.0.1", 5092),)
    assert s.rpc_dgram == (RpcAddress("udp", "127.0.0.1", 5093),)
    assert s.rpc_binrpc == (RpcAddress("tcp", "127.0.0.1", 5094),)
    assert (s.rpc_fifo, s.rpc_fifo_reply_dir, s.rpc_token) == (None, "/tmp", None)
    addresses = (*s.rpc_http, *s.rpc_dgram, *s.rpc_binrpc)
    assert all(a.loopback and a.port not in (5060, 5061) for a in addresses)
    ports = [a.port for a in addresses] + [listen.port for listen in s.sip_listen]
    assert len(set(ports)) == 4  # SIP's udp and tcp share 5090


def test_rpc_address_forms() -> None:
    s = _load(["--rpc-http", "[::1]:8000", "--rpc-http", "unix:/run/x/http.sock",
               "--rpc-dgram", "udp:127.0.0.2, unix:/run/x/rpc.sock", "--rpc-binrpc", "::1",
               "--rpc-fifo", "/run/x/rpc.fifo", "--rpc-fifo-reply-dir", "/var/tmp"])
    assert s.rpc_http == (RpcAddress("tcp", "::1", 8000),
                          RpcAddress("unix", path="/run/x/http.sock"))
    assert s.rpc_dgram == (RpcAddress("udp", "127.0.0.2", 5093),
                           RpcAddress("unix", path="/run/x/rpc.sock"))
    assert s.rpc_binrpc == (RpcAddress("tcp", "::1", 5094),)
    assert (s.rpc_fifo, s.rpc_fifo_reply_dir) == ("/run/x/rpc.fifo", "/var/tmp")
    assert [str(a) for a in (*s.rpc_http, *s.rpc_dgram)] == [
        "tcp:[::1]:8000", "unix:/run/x/http.sock", "udp:127.0.0.2:5093", "unix:/run/x/rpc.sock"
    ]


@pytest.mark.parametrize("off", ["", "off", "OFF"])
def test_rpc_transports_can_be_disabled(off: str) -> None:
    s = _load(env={"IMC_RPC_HTTP": off, "IMC_RPC_DGRAM": off, "IMC_RPC_BINRPC": off,
                   "IMC_RPC_FIFO": off})
    assert (s.rpc_http, s.rpc_dgram, s.rpc_binrpc, s.rpc_fifo) == ((), (), (), None)


def test_rpc_http_off_loopback_needs_a_token() -> None:
    message = _error(["--rpc-http", "0.0.0.0:5092"])
    assert message.startswith("rpc_http: tcp:0.0.0.0:5092 is not a loopback address; set rpc_token")
    assert "\n" not in message
    assert "rpc_http:" in _error(["--rpc-http", "192.0.2.1:80"])
    token = "0123456789abcdef"
    s = _load(["--rpc-http", "0.0.0.0:5092"], {"IMC_RPC_TOKEN": token})
    assert s.rpc_token == token
    assert "rpc_token = (set)" in s.describe()
    assert token not in repr(s)
    # unauthenticated transports off loopback are allowed when asked for (logged at start)
    assert not _load(["--rpc-dgram", "udp:0.0.0.0:5093"]).rpc_dgram[0].loopback


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--rpc-dgram", "tcp:127.0.0.1:1"], "tcp is not possible here"),
    (["--rpc-binrpc", "udp:127.0.0.1:1"], "udp is not possible here"),
    (["--rpc-http", "127.0.0.1:99999"], "must look like tcp:127.0.0.1:5092"),
    (["--rpc-http", "unix:"], "needs a socket path"),
    (["--rpc-dgram", "udp:127.0.0.1:7,udp:127.0.0.1:7"], "listed twice"),
    (["--rpc-binrpc", "127.0.0.1:5092"], "also used by rpc_http"),
    (["--rpc-http", "127.0.0.1:5090"], "also used by sip_listen"),
    (["--rpc-token", "short"], "at least 16"),
    (["--rpc-token", "has a space in it!!"], "no spaces"),
])
def test_rpc_bad_values(argv: list[str], fragment: str) -> None:
    message = _error(argv)
    assert fragment in message
    if "--rpc-token" in argv:  # the token is never echoed
        assert argv[1] not in message
