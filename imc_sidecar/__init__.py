"""imc_sidecar: Kamailio's imc chat rooms as a service beside Kamailio.

The public API, small on purpose:

* `Client`: the analysts' client (rooms, members, statistics and usage history as
  pandas DataFrames), over a sidecar's RPC or straight from a database.  Importing it
  imports pandas, so it is loaded on first use: the server never pays for it.
* `Settings`, `load_settings`, `SettingsError`: every setting and how it is read.
* `Sidecar`: the whole server, `await Sidecar(settings).start()` / `.stop()`.
* `main`: the `imc-sidecar` command line.

Everything else is internal and may change; the layout is described in README.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from .app import Sidecar
    from .cli import main
    from .client import Client

__all__ = ["Client", "Settings", "SettingsError", "Sidecar", "load_settings", "main"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use: the client needs pandas, the server needs neither it nor
    # the cost of importing the whole app just to read a setting.
    if name == "Client":
        from .client import Client

        return Client
    if name == "Sidecar":
        from .app import Sidecar

        return Sidecar
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module 'imc_sidecar' has no attribute {name!r}")
