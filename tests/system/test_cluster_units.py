"""The cluster's systemd units verify, keep the service unit's hardening and set their role."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UNITS = {
    "crossbook-ingest.service": "crossbook-ingest.service",
    "crossbook-edge@.service": "crossbook-edge@9471.service",
}


@pytest.fixture
def units(tmp_path: Path) -> list[Path]:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is required under CI (Debian package 'systemd')")
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    out = []
    for source, name in UNITS.items():  # verify checks that ExecStart= binaries exist: this checkout's
        local = tmp_path / name
        text = (ROOT / "systemd" / source).read_text()
        local.write_text(text.replace("/opt/crossbook/.venv/bin", str(Path(sys.executable).parent)))
        out.append(local)
    return out


def test_cluster_units_verify_and_stay_hardened(units: list[Path]) -> None:
    proc = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    for unit in units:
        proc = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
        )
        found = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", proc.stdout)
        assert found, proc.stdout + proc.stderr
        assert float(found.group(1)) <= 2.0


def test_each_unit_sets_its_role_and_an_edge_its_metrics_port_from_the_instance() -> None:
    ingest = (ROOT / "systemd" / "crossbook-ingest.service").read_text().splitlines()
    edge = (ROOT / "systemd" / "crossbook-edge@.service").read_text().splitlines()
    assert "Environment=CROSSBOOK_CLUSTER__ROLE=ingest" in ingest
    assert "Environment=CROSSBOOK_CLUSTER__ROLE=edge" in edge
    assert "Environment=CROSSBOOK_METRICS__PORT=%i" in edge
    service = (ROOT / "systemd" / "crossbook.service").read_text().splitlines()
    hardening = [line for line in service if line.startswith(("Protect", "Restrict", "SystemCallFilter", "Private"))]
    assert all(line in ingest and line in edge for line in hardening)
