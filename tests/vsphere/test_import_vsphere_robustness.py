"""``ringfence import vsphere`` on a user's worst day, against the real simulator where it can play the part.

Each case ends in one sentence (exit status 2) or in a warning naming the vCenter object; never a traceback.
Wrong password, refused port and untrusted certificate are in test_import_vsphere.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.conftest import run_cli
from ringfence.files.importers.vsphere_estate import (
    ClusterFacts,
    HostFacts,
    VCenterFacts,
    VmFacts,
    import_warnings,
)

from .conftest import PASSWORD, USER, VCenter, require_pyvmomi, set_host_connection, start_vcsim, stop_vcsim
from .test_import_vsphere import _one_error

require_pyvmomi()


def _import(url: str, *extra: str | Path) -> Any:
    return run_cli("import", "vsphere", "--server", url, "--user", USER, "--password", PASSWORD, *extra)


def _warnings(stderr: str) -> list[str]:
    """Each ``warning:`` of stderr as one line (Rich wraps long ones)."""
    text = " ".join(stderr.split())
    return [f"warning:{part}".split(" Wrote ")[0].strip() for part in text.split("warning:")[1:]]


def test_a_disconnected_host_is_imported_with_a_warning_naming_it(vcsim_binary: Path, tmp_path: Path) -> None:
    process, url = start_vcsim(vcsim_binary, "-cluster", "1", "-host", "3", "-vm", "2", "-ds", "1", "-ha", "1")
    try:
        set_host_connection(process, "DC0_C0_H1", connected=False)
        out = tmp_path / "estate.yaml"
        result = _import(url, "--out", out)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        (warning,) = _warnings(result.stderr)
        assert warning.startswith(
            "warning: host DC0_C0_H1 (cluster DC0_C0, datacenter DC0, disconnected) is not connected to vCenter"
        )
        assert "DC0_C0_H0" not in warning
        assert "DC0_C0_H2" not in warning
        hosts = [a for a in yaml.safe_load(out.read_text())["assets"] if a["kind"] == "host"]
        assert len(hosts) == 3  # still in the estate: it is still in the cluster HA counts on
    finally:
        stop_vcsim(process)


def test_a_cluster_without_ha_is_named_in_a_warning(vcenter: VCenter, tmp_path: Path) -> None:
    result = _import(vcenter.url, "--out", tmp_path / "estate.yaml")
    assert result.returncode == 0, result.stderr
    assert _warnings(result.stderr) == [
        "warning: cluster DC0_C3 (datacenter DC0, 4 VMs) has vSphere HA off, so each VM there requires its own "
        "host (nothing is guaranteed to restart it elsewhere)"
    ]


def test_a_vcenter_without_hosts_is_one_sentence(vcsim_binary: Path, tmp_path: Path) -> None:
    process, url = start_vcsim(vcsim_binary, "-cluster", "0", "-vm", "0", "-ds", "1")
    try:
        out = tmp_path / "estate.yaml"
        message = _one_error(_import(url, "--out", out))
        assert f"vCenter at {url} shows user 'ringfence' no hosts, so there is nothing to import" in message
        assert not out.exists()
    finally:
        stop_vcsim(process)


class _NotVCenter(BaseHTTPRequestHandler):
    """A web server at the address given, as when --server names the wrong machine (a load balancer's page)."""

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_vcenter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotVCenter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_vcenter_is_one_sentence(not_vcenter: str) -> None:
    message = _one_error(_import(not_vcenter))
    assert f"vCenter at {not_vcenter}: not a vCenter answering the vSphere API" in message


def test_warnings_name_what_the_import_could_not_vouch_for() -> None:
    """The pure half: admission control off, a VM vCenter places nowhere, and many clusters in one line."""
    clusters = tuple(ClusterFacts(f"domain-c{n}", f"C{n:02d}", "DC", True, 0, (f"host-{n}",)) for n in range(12))
    hosts = tuple(HostFacts(f"host-{n}", f"H{n:02d}", "DC", f"domain-c{n}", esxi_version="7.0.3") for n in range(12))
    hosts += (HostFacts("host-99", "H99", "DC", None, connection="notResponding"),)
    vms = (VmFacts("vm-1", "orphan", "DC", None), VmFacts("vm-2", "web", "DC", "host-0"))
    warnings = import_warnings(VCenterFacts(clusters, hosts, vms))
    assert warnings == [
        "host H99 (datacenter DC, notResponding, ESXi version unknown) is not connected to vCenter "
        "(runtime.connectionState): imported from what vCenter last knew; a host without an ESXi version is no "
        "target of an update of vmware/esxi; re-import (--merge) once connected",
        "clusters C00 (datacenter DC, 1 VMs), C01 (datacenter DC, 0 VMs), C02 (datacenter DC, 0 VMs), "
        "C03 (datacenter DC, 0 VMs), C04 (datacenter DC, 0 VMs), C05 (datacenter DC, 0 VMs), "
        "C06 (datacenter DC, 0 VMs), C07 (datacenter DC, 0 VMs), C08 (datacenter DC, 0 VMs), "
        "C09 (datacenter DC, 0 VMs) and 2 more have HA admission control off (no failover capacity reserved), "
        "so each VM there requires its own host (nothing is guaranteed to restart it elsewhere)",
        "vCenter names no host for VM orphan (datacenter DC) (orphaned or inaccessible): "
        "imported requiring only its datastores",
    ]
    assert import_warnings(VCenterFacts(clusters[:0], hosts[:1], vms[1:])) == []


def test_vcenter_going_away_mid_import_is_one_sentence(vcsim_binary: Path) -> None:
    """Logged in, then vCenter stops answering before the inventory is read: an InputError, not a traceback."""
    from ringfence.core.errors import InputError
    from ringfence.files.importers import vsphere

    process, url = start_vcsim(vcsim_binary, "-cluster", "1", "-host", "2", "-vm", "1", "-ds", "1")
    try:
        si = vsphere._connect(vsphere.VCenterLogin(server=url, user=USER, password=PASSWORD))
    finally:
        stop_vcsim(process)
    with pytest.raises(InputError, match=r"the connection dropped while the inventory was read \("):
        vsphere._read_inventory(si, f"vCenter at {url}", 1000)
