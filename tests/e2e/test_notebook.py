"""The analysts' notebook, executed top to bottom in a real Jupyter kernel.

A real sidecar is fed by `imc-sidecar demo` over real sockets; the notebook then runs
once against the sidecar's RPC and once against its database, and its own cells
assert that what they chart agrees with the demo's summary of what it sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, rpc_result, sidecar_args

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs() -> None:
    assert NOTEBOOKS, "no notebook in notebooks/"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name}: a code cell has outputs; clear them before committing")


def _run_notebook(path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                  env: dict[str, str]) -> nbformat.NotebookNode:
    for name in ("IMC_RPC_URL", "IMC_DB_URL", "IMC_RPC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this environment
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return notebook


def test_room_usage_notebook_runs_on_demo_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, rpc_port = free_port(), free_port()
    db = tmp_path / "imc.sqlite"
    sidecar = SidecarProcess(sidecar_args(
        f"sqlite:///{db}", port, "--rpc-http", f"127.0.0.1:{rpc_port}",
        "--history-flush-interval", "0.1",
    )).start()
    summary_path = tmp_path / "demo.json"
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "imc_sidecar", "demo",
             "--sip", f"udp:127.0.0.1:{port}", "--rpc", f"http://127.0.0.1:{rpc_port}/RPC",
             "--duration", "12", "--users", "24", "--ghosts", "1", "--rooms", "6",
             "--rate", "15", "--seed", "7", "--net", "127.79.0.0/16",
             "--summary", str(summary_path), "--no-progress"],
            capture_output=True, text=True, timeout=150,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        summary = json.loads(summary_path.read_text())
        assert summary["chat_ok"] > 50 and summary["invitations"]["sent"] > 0
        deadline = time.monotonic() + 10
        while rpc_result(rpc_port, "stats.fetchn", ["imc:"])["imc.history_queued"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)

        path = REPO / "notebooks" / "room_usage.ipynb"
        common = {"IMC_DEMO_SUMMARY": str(summary_path)}
        live = _run_notebook(path, tmp_path, monkeypatch,
                             {**common, "IMC_RPC_URL": f"http://127.0.0.1:{rpc_port}/RPC"})
        offline = _run_notebook(path, tmp_path, monkeypatch,
                                {**common, "IMC_DB_URL": f"sqlite:///{db}"})
    finally:
        sidecar.terminate()
    for notebook in (live, offline):
        outputs = [o for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.outputs]
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "history agrees with what the demo sent" in text
        images = [o for o in outputs if o.output_type == "display_data"
                  and "image/png" in o.get("data", {})]
        assert len(images) >= 7, f"expected every chart, got {len(images)} images"
