"""``ringfence import vsphere`` against a real simulated vCenter (govmomi's vcsim, tests/vsphere/conftest.py).

The session's vCenter: one datacenter DC0, clusters DC0_C0..C3 of 8 hosts each, whose admission control
tolerates 1, 2, 1 host failures and, for C3, HA off; host i of a cluster has NIC driver
(i40en, bnxtnet, qedentv)[i % 3] and model (PowerEdge R740, ProLiant DL380 Gen10)[i % 2]; 4 VMs a cluster,
2 datastores. The requirement rule is checked the way a user sees it: through ``ringfence impact``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.conftest import run_cli

from .conftest import PASSWORD, USER, VCenter, require_pyvmomi, start_vcsim, stop_vcsim

require_pyvmomi()

CLUSTERS = {"DC0_C0": 1, "DC0_C1": 2, "DC0_C2": 1, "DC0_C3": 0}
NIC_DRIVERS = ("i40en", "bnxtnet", "qedentv")


def _import(vcenter: VCenter, out: Path, *extra: str) -> Any:
    result = run_cli(
        "import", "vsphere", "--server", vcenter.url, "--user", vcenter.user, "--password", vcenter.password,
        "--out", out, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def imported(vcenter: VCenter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vsphere") / "estate.yaml"
    _import(vcenter, out, "--site", "DC0=city")
    return out


def _assets(path: Path) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in yaml.safe_load(path.read_text())["assets"]}


def test_import_reads_every_cluster_host_vm_and_datastore(imported: Path) -> None:
    assets = _assets(imported)
    kinds = [a["kind"] for a in assets.values()]
    assert (kinds.count("host"), kinds.count("vm"), kinds.count("storage")) == (32, 16, 2)
    assert {a["site"] for a in assets.values()} == {"city"}  # --site DC0=city
    for cluster, failover in CLUSTERS.items():
        hosts = [a for a in assets.values() if a["kind"] == "host" and a["attrs"].get("cluster") == cluster]
        assert len(hosts) == 8
        for host in hosts:
            assert host["attrs"]["ha"] == ("true" if failover else "false")
            assert host["attrs"]["ha_failover_hosts"] == str(failover)
            assert host["software"] == [{"product": "vmware/esxi", "version": "6.5.0"}]
            assert host["attrs"]["esxi_build"] == "5969303"
            index = int(host["name"].rsplit("_H", 1)[1])
            assert host["attrs"]["nic_driver"] == NIC_DRIVERS[index % 3]
            assert (host["supplier"], host["attrs"]["model"]) == (
                ("dell", "PowerEdge R740") if index % 2 == 0 else ("hpe", "ProLiant DL380 Gen10")
            )
    vm = assets["dc0_c1_rp0_vm0"]
    assert vm["attrs"]["os"] == "otherGuest"
    assert "localds_0" in vm["requires"]  # a VM needs its datastores
    check = run_cli("check", imported)
    assert check.returncode == 0, check.stdout + check.stderr


def test_requirements_are_what_ha_guarantees(imported: Path, tmp_path: Path) -> None:
    """A VM of a cluster tolerating F host failures survives any F of its hosts down, not F + 1."""
    document = yaml.safe_load(imported.read_text())
    assets = {a["id"]: a for a in document["assets"]}
    for cluster, failover in CLUSTERS.items():
        hosts = sorted(i for i, a in assets.items() if a["kind"] == "host" and a["attrs"].get("cluster") == cluster)
        vms = sorted(i for i, a in assets.items() if a["kind"] == "vm" and a["attrs"].get("cluster") == cluster)
        assert len(vms) == 4
        if failover:
            # F hosts down, among them the ones the VMs run on: HA restarts them elsewhere, nothing else is down.
            own = sorted({assets[vm]["attrs"]["host"] for vm in vms})
            down = (own + [h for h in hosts if h not in own])[:failover]
            assert _down(imported, down) == set(down)
            # One more host down and vSphere guarantees nothing: every VM of the cluster counts as down.
            more = [*down, next(h for h in hosts if h not in down)]
            assert _down(imported, more) == {*more, *vms}
        else:
            # HA off: a VM goes down with its own host, and only then.
            vm = assets[vms[0]]
            own = next(r for r in vm["requires"] if isinstance(r, str) and r in hosts)
            assert vms[0] in _down(imported, [own])
            others = [h for h in hosts if h != own]
            assert vms[0] not in _down(imported, others)


def _down(estate: Path, hosts: list[str]) -> set[str]:
    args = [a for h in hosts for a in ("--fail", f"asset:{h}")]
    result = run_cli("impact", estate, *args, "--json")
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout)["assets_down"])


def test_merge_keeps_what_people_wrote(vcsim_binary: Path, tmp_path: Path) -> None:
    process, url = start_vcsim(vcsim_binary, "-cluster", "1", "-host", "3", "-vm", "3", "-ds", "1", "-ha", "1")
    try:
        vcenter = VCenter(url, USER, PASSWORD)
        estate = tmp_path / "estate.yaml"
        _import(vcenter, estate)
        document = yaml.safe_load(estate.read_text())
        assets = {a["id"]: a for a in document["assets"]}
        # What people write after an import: a service on a VM, their own attrs, software and requirements,
        # an asset vCenter does not know.
        document["services"] = [
            {"id": "epr", "tier": 1, "rto": "4h", "continuity": "paper packs", "requires": ["dc0_c0_rp0_vm0"]}
        ]
        assets["dc0_c0_h0"]["attrs"]["owner"] = "infra team"
        assets["dc0_c0_rp0_vm0"]["software"] = [{"product": "microsoft/sql-server", "version": "2019"}]
        assets["dc0_c0_rp0_vm0"]["requires"].append("dc0_c0_rp0_vm2")
        document["assets"].append({"id": "epr-lb", "kind": "appliance", "requires": ["dc0_c0_rp0_vm0"]})
        # What vCenter changes afterwards (seen from the file): a host updated, a host added.
        assets["dc0_c0_h1"]["software"][0]["version"] = "6.0.0"
        document["assets"].remove(assets["dc0_c0_h2"])
        estate.write_text(yaml.safe_dump(document, sort_keys=False))
        _rename_and_remove_vms(url, rename={"DC0_C0_RP0_VM0": "epr-db-renamed"}, remove={"DC0_C0_RP0_VM1"})

        result = run_cli(
            "import", "vsphere", "--server", url, "--user", USER, "--password", PASSWORD, "--merge", estate
        )
        assert result.returncode == 0, result.stderr
        report = " ".join(result.stderr.split())
        assert "1 asset appeared: dc0_c0_h2" in report
        assert "1 asset disappeared: dc0_c0_rp0_vm1" in report
        assert "dc0_c0_h1 changed: vmware/esxi 6.0.0 → 6.5.0" in report
        assert "dc0_c0_rp0_vm0 changed: name DC0_C0_RP0_VM0 → epr-db-renamed" in report
        assert "dc0_c0_rp0_vm2 changed" not in report  # its requirements read back equal: no noise

        merged = yaml.safe_load(estate.read_text())
        after = {a["id"]: a for a in merged["assets"]}
        assert merged["services"] == document["services"]
        assert "dc0_c0_rp0_vm1" not in after
        assert "dc0_c0_h2" in after
        assert after["dc0_c0_h0"]["attrs"]["owner"] == "infra team"
        vm = after["dc0_c0_rp0_vm0"]  # renamed in vCenter, same id: the service still finds it
        assert vm["name"] == "epr-db-renamed"
        assert {"product": "microsoft/sql-server", "version": "2019"} in vm["software"]
        assert "dc0_c0_rp0_vm2" in vm["requires"]
        hosts = "attrs.vsphere.type=HostSystem,attrs.datacenter=DC0,attrs.cluster=DC0_C0"
        assert {"any": 2, "where": hosts} in vm["requires"]
        assert after["epr-lb"] == {"id": "epr-lb", "kind": "appliance", "requires": ["dc0_c0_rp0_vm0"]}
        assert run_cli("check", estate).returncode == 0
    finally:
        stop_vcsim(process)


def _rename_and_remove_vms(url: str, *, rename: dict[str, str], remove: set[str]) -> None:
    """Change the simulated vCenter through the vSphere API, as an administrator would."""
    from urllib.parse import urlsplit

    from pyVim.connect import Disconnect, SmartConnect
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    parts = urlsplit(url)
    si = SmartConnect(protocol="http", host=parts.hostname, port=parts.port, user=USER, pwd=PASSWORD)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        for vm in view.view:
            if vm.name in rename:
                WaitForTask(vm.Rename_Task(rename[vm.name]))
            elif vm.name in remove:
                WaitForTask(vm.PowerOffVM_Task())
                WaitForTask(vm.Destroy_Task())
    finally:
        Disconnect(si)


def _one_error(result: Any) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    return " ".join(lines)


def test_wrong_password_is_one_sentence(vcenter: VCenter, tmp_path: Path) -> None:
    result = run_cli("import", "vsphere", "--server", vcenter.url, "--user", USER, "--password", "nope")
    assert "refused user 'ringfence': wrong user name or password" in _one_error(result)


def test_unreachable_server_is_one_sentence() -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli("import", "vsphere", "--server", f"http://127.0.0.1:{port}", "--user", USER, "--password", "x")
    assert "connection refused" in _one_error(result)
    result = run_cli("import", "vsphere", "--server", "https://", "--user", USER, "--password", "x")
    assert "--server 'https://' is not a vCenter address" in _one_error(result)


def test_untrusted_certificate_needs_insecure(vcsim_binary: Path, tmp_path: Path) -> None:
    process, url = start_vcsim(vcsim_binary, "-tls", "-cluster", "1", "-host", "2", "-vm", "1", "-ds", "1")
    try:
        assert url.startswith("https://")
        args = ("import", "vsphere", "--server", url, "--user", USER, "--password", PASSWORD)
        assert "certificate is not trusted" in _one_error(run_cli(*args))
        out = tmp_path / "lab.yaml"
        assert run_cli(*args, "--insecure", "--out", out).returncode == 0
        assert len(_assets(out)) == 2 + 1 + 1
    finally:
        stop_vcsim(process)


def test_without_the_extra_the_import_names_it() -> None:
    """Where pyVmomi is not installed (``sys.modules[name] = None``: what Python itself marks unimportable)."""
    code = (
        "import sys; sys.modules['pyVmomi'] = None; sys.modules['pyVim'] = None\n"
        "sys.argv = ['ringfence', 'import', 'vsphere', '--server', 'https://vc', '--user', 'u', '--password', 'p']\n"
        "from ringfence.cli.main import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert "pip install 'ringfence[vsphere]'" in _one_error(result)


def test_bad_options_name_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ("import", "vsphere", "--server", "https://vc", "--user", "u")
    assert "--site 'DC0' is not DATACENTER=SITE" in _one_error(run_cli(*base, "--password", "p", "--site", "DC0"))
    monkeypatch.delenv("RINGFENCE_VSPHERE_PASSWORD", raising=False)
    assert "--password is required" in _one_error(run_cli(*base))
