"""The package's small public API: what `imc_sidecar` exports, and what it costs to import."""

from __future__ import annotations

import pytest

import imc_sidecar


def test_every_exported_name_resolves() -> None:
    from imc_sidecar.app import Sidecar
    from imc_sidecar.cli import main
    from imc_sidecar.client import Client
    from imc_sidecar.settings import Settings, SettingsError, load_settings

    expected = {
        "Client": Client, "Settings": Settings, "SettingsError": SettingsError,
        "Sidecar": Sidecar, "load_settings": load_settings, "main": main,
    }
    assert sorted(imc_sidecar.__all__) == sorted(expected)
    for name, value in expected.items():
        assert getattr(imc_sidecar, name) is value
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        imc_sidecar.nothing  # type: ignore[attr-defined]  # noqa: B018
