"""The apps start under ``panel serve`` and build a session without error.

``panel serve`` answers HTTP 200 even when the script raised, so the server's log is read too.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("app", "shipped"),
    [("priors", False), ("langevin", False), ("langevin", True), ("inpainting", True), ("drums", True)],
    ids=["priors", "langevin", "langevin-shipped", "inpainting-shipped", "drums-shipped"],
)
def test_app_serves_a_session_without_errors(app, shipped, tiny_priors_path, tmp_path):
    """``shipped``: the README's first command, on the samplers' shipped default priors (the wave priors, which
    have a likelihood of their own), or the inpainting app on the shipped VQ-VAE, the drum machine on the shipped
    CWAE and MCNN."""
    port = _free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPMODELS_")}
    if not shipped:
        env["SEPMODELS_PRIORS"] = tiny_priors_path
    with log.open("w") as f:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panel",
                "serve",
                str(ROOT / "apps" / f"{app}.py"),
                "--port",
                str(port),
                "--address",
                "127.0.0.1",
                "--allow-websocket-origin",
                f"127.0.0.1:{port}",
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    try:
        html = None
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{app}", timeout=30) as r:
                    assert r.status == 200
                    html = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert html is not None, log.read_text()
        time.sleep(1.0)
        text = log.read_text()
        assert "Traceback" not in text and "ERROR" not in text, text
        assert "bokeh" in html.lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
