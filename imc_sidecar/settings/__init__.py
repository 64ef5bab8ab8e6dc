"""Settings: every modparam of Kamailio's imc module, plus where to listen and log.

Names, meanings and defaults are Kamailio's (imc.c `params[]`), except:

* `db_url` defaults to a SQLite file, `imc-sidecar.sqlite` in the working directory,
  instead of Kamailio's `mysql://kamailio:kamailiorw@localhost/kamailio`.
* `db_mode` defaults to 2 (write-through).  Kamailio master defaults to 0 and loses
  every room at a restart; 5.6 has no db_mode at all.  Only 0 and 2 exist here.

Sources, each overriding the one before: defaults, a TOML file (`--config FILE` or
`IMC_CONFIG`; top-level keys named like the settings), `IMC_<NAME>` environment
variables, and `--<name-with-dashes>` command-line flags.  A bad value stops start-up
with one line naming the setting and where the value came from.

Admin RPC (see README "Admin RPC"): every transport listens on loopback by default, on
ports next to the SIP default so that a Kamailio on the same host (5060, its RPC on unix
sockets and FIFOs) never collides: JSON-RPC over HTTP `127.0.0.1:5092` (`/RPC`),
JSON-RPC datagrams `udp:127.0.0.1:5093`, BINRPC `tcp:127.0.0.1:5094`.  Unix sockets and
the FIFO are opt-in, by explicit path.  An empty value (or `off`) disables a transport.
An HTTP address that is not loopback must be given explicitly and needs `rpc_token`
(clients send `Authorization: Bearer <token>`); start-up refuses it otherwise.

`extra_hdrs` is a block of `Name: value` header lines.  Since a flag or a variable
cannot easily hold a line break, the two-character escapes `\\r\\n` and `\\n` mark one
(and `\\\\` is a backslash); real line breaks work too.  Each line ends up with CRLF.
"""

from .model import (
    DEFAULT_DB_URL,
    DEFAULT_SIP_PORT,
    Listen,
    RpcAddress,
    Settings,
    SettingsError,
)
from .sources import add_arguments, load_settings

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_SIP_PORT",
    "Listen",
    "RpcAddress",
    "Settings",
    "SettingsError",
    "add_arguments",
    "load_settings",
]
