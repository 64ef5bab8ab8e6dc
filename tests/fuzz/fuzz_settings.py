"""Target `settings`: every setting's rule (settings/values.py SPECS) on any text, and the
readers of settings/sources.py: IMC_* variables and the TOML file.

Byte 0 picks the way in: a rule, a rule on a list (TOML arrays), an IMC_* variable, or
the TOML file.  For the first three the rest is `NAME LF TEXT` (a NAME that is no
setting picks one by its bytes, so seeds keep their meaning as settings are added); for
the file it is the file.  Text is UTF-8 with undecodable bytes kept as the OS keeps them
in variables and arguments (surrogateescape).  Holds:

* a rule raises only BadValue, on a string as on a list of strings (TOML arrays);
* `load_settings` raises only SettingsError, whatever a variable or the TOML file holds,
  so a bad value stops start-up with its one line, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import tempfile

from imc_sidecar.settings.model import SettingsError
from imc_sidecar.settings.sources import load_settings
from imc_sidecar.settings.values import SPECS, BadValue, Spec

_handle, TOML_PATH = tempfile.mkstemp(prefix="imc-fuzz-", suffix=".toml")
os.close(_handle)
atexit.register(os.unlink, TOML_PATH)
_BY_NAME = {spec.name.encode(): spec for spec in SPECS}


def _spec(name: bytes) -> Spec:
    return _BY_NAME.get(name) or SPECS[sum(name) % len(SPECS)]


def _rule(spec: Spec, raw: object) -> None:
    with contextlib.suppress(BadValue):
        spec.parse(raw)


def _load(args: argparse.Namespace, environ: dict[str, str]) -> None:
    with contextlib.suppress(SettingsError):
        load_settings(args, environ)


def one_input(data: bytes) -> None:
    way = data[0] % 4 if data else 0
    rest = data[1:]
    if way == 3:
        with open(TOML_PATH, "wb") as toml:
            toml.write(rest)
        _load(argparse.Namespace(config=TOML_PATH), {})
        return
    name, _, raw = rest.partition(b"\n")
    spec = _spec(name)
    text = raw.decode("utf-8", "surrogateescape")
    if way == 0:
        _rule(spec, text)
    elif way == 1:
        _rule(spec, text.split("\n"))
    else:
        _load(argparse.Namespace(), {f"IMC_{spec.name.upper()}": text})
