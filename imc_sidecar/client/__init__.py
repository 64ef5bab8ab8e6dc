"""The analysts' client: rooms, members, statistics and usage history as DataFrames.

Imports pandas: the server never imports this package (a test holds it to that).
"""

from . import aggregate
from .api import DEFAULT_URL, Client, TimeLike
from .schema import FRAMES
from .sources import DB_STATS, RpcError

__all__ = ["DB_STATS", "DEFAULT_URL", "FRAMES", "Client", "RpcError", "TimeLike", "aggregate"]
