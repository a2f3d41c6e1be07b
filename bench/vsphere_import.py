"""``ringfence import vsphere`` from a simulated vCenter of 2,000 hosts and 20,000 VMs (issue 16: ≤ 60 s).

Set-up (not timed): the vcsim of the tests (``tests/vsphere/vcsim/main.go``, built once into the tests' cache
by ``tests/vsphere/conftest.py``), started per shape on a free localhost port. Then, per shape:

- **the command**: ``ringfence import vsphere --server URL --user … --out estate.yaml`` as a whole process, as
  a user runs it (best of ``--repeat``): the target;
- **the breakdown**, in a fresh worker process doing what the command does, phase by phase: connect (log in),
  property collection (one container view, ``RetrievePropertiesEx`` in pages of ``--page`` objects), reading
  the answers into facts, building the estate document, validating it (``parse_estate_document``, as the
  command does before writing) and writing the YAML; with the worker's peak memory (``VmHWM``);
- **before/after** (``--page-sizes``): the property collection alone with vCenter's default page of 100
  objects and with ours, and (``--per-object N``) the naive way, one property read after another through
  pyVmomi's managed objects, for the first N hosts and VMs, extrapolated to the whole inventory.

Shapes (``--hosts``, ``--vms``: default 2,000 and 20,000, spread evenly):

- ``20x100``: 20 clusters of 100 hosts, 2 datastores;
- ``250x8``: 250 clusters of 8 hosts (a trust's many small clusters), 2 datastores;
- ``mixed``: 4 datacenters of 25 clusters of 20 hosts, each host with two NIC drivers of four (``-mixnic``),
  four hardware models, 50 datastores on every host and 50 distributed port groups per datacenter.

    .venv/bin/python bench/vsphere_import.py [--shapes 20x100,250x8,mixed] [--hosts 2000 --vms 20000]

Results: ``bench/results/vsphere_import.json``. The vcsim process's own memory is reported for information.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

sys.path.insert(0, str(common.BENCH_DIR.parent / "tests"))

from vsphere.conftest import (  # type: ignore[import-not-found]  # the harness of the tests
    PASSWORD,
    USER,
    build_vcsim,
    start_vcsim,
)

TARGET_SECONDS = 60.0
NOMINAL_HOSTS, NOMINAL_VMS = 2000, 20000


@dataclass(frozen=True)
class Shape:
    name: str
    what: str
    datacenters: int
    clusters: int  # per datacenter
    extra: tuple[str, ...] = ()

    def args(self, hosts: int, vms: int) -> list[str]:
        clusters = self.datacenters * self.clusters
        per_cluster_hosts = max(1, hosts // clusters)
        per_cluster_vms = max(0, vms // clusters)
        return [
            "-dc", str(self.datacenters), "-cluster", str(self.clusters), "-host", str(per_cluster_hosts),
            "-vm", str(per_cluster_vms), *self.extra,
        ]  # fmt: skip


MODELS = "Dell Inc./PowerEdge R750,Dell Inc./PowerEdge R740,HPE/ProLiant DL380 Gen10,Lenovo/ThinkSystem SR650"
MIXED = ("-ds", "50", "-pg", "50", "-mixnic", "-nic", "i40en,bnxtnet,qedentv,ntg3", "-ha", "1,2,0,1", "-model", MODELS)
SHAPES = {
    s.name: s
    for s in (
        Shape("20x100", "20 clusters × 100 hosts, 2 datastores", 1, 20, ("-ds", "2")),
        Shape("250x8", "250 clusters × 8 hosts, 2 datastores", 1, 250, ("-ds", "2")),
        Shape(
            "mixed",
            "4 DCs × 25 clusters × 20 hosts, 2 NIC drivers a host, 50 datastores and 50 port groups a DC",
            4,
            25,
            MIXED,
        ),
    )
}


# ----------------------------------------------------------------------------------- worker


def worker(argv: list[str]) -> None:
    """``--worker breakdown URL OUT PAGE`` or ``--worker collect URL PAGE`` or ``--worker per-object URL N``."""
    mode, url = argv[0], argv[1]
    if mode == "breakdown":
        common.emit(_breakdown(url, Path(argv[2]), int(argv[3])))
    elif mode == "collect":
        common.emit(_collect_only(url, int(argv[2])))
    else:
        common.emit(_per_object(url, int(argv[2])))


def _login(url: str) -> Any:
    from ringfence.files.importers.vsphere import VCenterLogin

    return VCenterLogin(server=url, user=USER, password=PASSWORD)


def _breakdown(url: str, out: Path, page: int) -> dict[str, Any]:
    from ringfence.core.estate import parse_estate_document
    from ringfence.files.disk import write_document
    from ringfence.files.importers import vsphere
    from ringfence.files.importers.vsphere_estate import estate_from_facts

    phases: dict[str, float] = {}
    start, start_cpu = time.perf_counter(), time.process_time()
    facts = vsphere.read_vcenter(_login(url), timings=phases, page=page)
    document, phases["build the estate"] = common.timed(estate_from_facts, facts, "bench")
    estate, phases["validate"] = common.timed(parse_estate_document, document, source=str(out))
    _, phases["write YAML"] = common.timed(write_document, document, out)
    total = time.perf_counter() - start
    return {
        "phases": phases,
        "total": total,
        "cpu": time.process_time() - start_cpu,
        "peak_rss": common.peak_rss_bytes(),
        "hosts": len(facts.hosts),
        "vms": len(facts.vms),
        "datastores": len(facts.datastores),
        "clusters": len(facts.clusters),
        "assets": len(estate.assets),
        "bytes": out.stat().st_size,
    }


def _collect_only(url: str, page: int) -> dict[str, Any]:
    from ringfence.files.importers import vsphere

    phases: dict[str, float] = {}
    vsphere.read_vcenter(_login(url), timings=phases, page=page)
    return {"seconds": phases["property collection"]}


def _per_object(url: str, limit: int) -> dict[str, Any]:
    """The naive import: walk the inventory through pyVmomi's managed objects, one property read at a time."""
    from urllib.parse import urlsplit

    from pyVim import connect
    from pyVmomi import vim

    pyvim: Any = connect  # pyVmomi's functions carry no annotations
    parts = urlsplit(url)
    si = pyvim.SmartConnect(protocol=parts.scheme, host=parts.hostname, port=parts.port, user=USER, pwd=PASSWORD)
    try:
        content = si.RetrieveContent()
        hosts_view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        vms_view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        hosts, vms = list(hosts_view.view), list(vms_view.view)
        start = time.perf_counter()
        for host in hosts[:limit]:
            info = host.hardware.systemInfo
            _ = (host.name, host.parent, info.vendor, info.model, host.config.product.version)
            _ = (host.config.product.build, [n.driver for n in host.config.network.pnic], host.runtime)
        host_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for vm in vms[:limit]:
            _ = (vm.name, vm.parent, vm.runtime.host, vm.datastore, vm.config.guestFullName, vm.config.template)
        vm_seconds = time.perf_counter() - start
        measured_hosts, measured_vms = min(limit, len(hosts)), min(limit, len(vms))
        return {
            "measured_hosts": measured_hosts,
            "measured_vms": measured_vms,
            "host_seconds": host_seconds,
            "vm_seconds": vm_seconds,
            "estimate": host_seconds / max(1, measured_hosts) * len(hosts)
            + vm_seconds / max(1, measured_vms) * len(vms),
        }
    finally:
        pyvim.Disconnect(si)


# ----------------------------------------------------------------------------------- driver


def _vcsim_rss(process: subprocess.Popen[str]) -> int:
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop vcsim. Its clean exit removes a directory per VM (minutes for 20,000): it is killed instead, and the
    datastore directories it made under a private TMPDIR are removed here."""
    process.kill()
    process.wait(timeout=30)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def run_shape(shape: Shape, args: argparse.Namespace, binary: Path, report: common.Report) -> dict[str, Any]:
    vcsim_args = shape.args(args.hosts, args.vms)
    common.log(f"[{shape.name}] starting vcsim {' '.join(vcsim_args)}…")
    with tempfile.TemporaryDirectory(prefix="ringfence-vcsim-") as tmp:
        env_tmp = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = tmp  # vcsim's datastores live here: removed with it, whatever state it ends in
        try:
            (process, url), started = common.timed(start_vcsim, binary, *vcsim_args)
        finally:
            if env_tmp is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = env_tmp
        try:
            common.log(f"[{shape.name}] vcsim up in {started:.0f} s at {url}")
            return _measure(shape, args, url, Path(tmp), process, started, report)
        finally:
            _stop(process)
            shutil.rmtree(tmp, ignore_errors=True)


def _measure(
    shape: Shape,
    args: argparse.Namespace,
    url: str,
    tmp: Path,
    process: subprocess.Popen[str],
    started: float,
    report: common.Report,
) -> dict[str, Any]:
    out = tmp / "estate.yaml"
    command = [
        *common.ringfence_command(), "import", "vsphere", "--server", url, "--user", USER, "--out", str(out),
    ]  # fmt: skip
    os.environ["RINGFENCE_VSPHERE_PASSWORD"] = PASSWORD
    common.log(f"[{shape.name}] the command, best of {args.repeat}…")
    times = common.time_process(command, args.repeat)
    common.log(f"[{shape.name}] the breakdown…")
    worker_out = tmp / "breakdown.yaml"
    breakdown = common.run_worker(Path(__file__).resolve(), ["breakdown", url, str(worker_out), str(args.page)])
    sizes = f"{breakdown['hosts']:,} hosts, {breakdown['vms']:,} VMs, {breakdown['datastores']:,} datastores"
    report.add(
        f"{shape.name}: ringfence import vsphere",
        times.best,
        "s",
        TARGET_SECONDS if args.hosts >= NOMINAL_HOSTS and args.vms >= NOMINAL_VMS else None,
        f"{sizes}, {breakdown['clusters']:,} clusters; {common.cpu_text(times.best_cpu)}",
    )
    for phase, seconds in breakdown["phases"].items():
        report.add(f"{shape.name}:   {phase}", seconds, "s")
    report.add(
        f"{shape.name}:   peak memory (worker)",
        breakdown["peak_rss"] / 1e6,
        "MB",
        note=f"the phases: {common.format_value(breakdown['total'], 's')}, {common.cpu_text(breakdown['cpu'])}",
    )
    detail: dict[str, Any] = {
        "vcsim_args": shape.args(args.hosts, args.vms),
        "vcsim_start_seconds": started,
        "vcsim_peak_rss_mb": _vcsim_rss(process) / 1e6,
        "command_seconds": times.wall,
        "command_cpu_seconds": times.cpu,
        "breakdown": breakdown,
    }
    pages: dict[str, float] = {}
    for page in args.page_sizes:
        common.log(f"[{shape.name}] property collection, pages of {page}…")
        pages[str(page)] = common.run_worker(Path(__file__).resolve(), ["collect", url, str(page)])["seconds"]
        report.add(f"{shape.name}:   property collection, pages of {page:,}", pages[str(page)], "s")
    detail["property_collection_by_page"] = pages
    if args.per_object:
        common.log(f"[{shape.name}] per-object reads of {args.per_object} hosts and VMs…")
        naive = common.run_worker(Path(__file__).resolve(), ["per-object", url, str(args.per_object)])
        report.add(
            f"{shape.name}:   per-object reads instead (estimate)",
            naive["estimate"],
            "s",
            note=f"measured on {naive['measured_hosts']:,} hosts and {naive['measured_vms']:,} VMs, extrapolated",
        )
        detail["per_object"] = naive
    return detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--hosts", type=int, default=NOMINAL_HOSTS)
    parser.add_argument("--vms", type=int, default=NOMINAL_VMS)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the command, best taken (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of the command, no page-size comparison")
    parser.add_argument("--page", type=int, default=1000, help="the breakdown's page size (default: the importer's)")
    parser.add_argument(
        "--page-sizes", default="100,1000,5000", help="property collection alone with these page sizes ('' for none)"
    )
    parser.add_argument(
        "--per-object", type=int, default=200, help="hosts and VMs read one property at a time (0: skip)"
    )
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.quick:
        args.repeat, args.page_sizes = 1, ""
    args.page_sizes = [int(p) for p in args.page_sizes.split(",") if p.strip()]
    names = [n.strip() for n in args.shapes.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"--shapes: no shape {', '.join(unknown)} (there are {', '.join(SHAPES)})")
    go = shutil.which("go")
    if go is None:
        raise SystemExit("go is not installed: apt-get install golang-go golang-github-vmware-govmomi-dev")
    binary = build_vcsim(go)
    report = common.Report(
        name="vsphere_import",
        title=f"ringfence import vsphere: {args.hosts:,} hosts, {args.vms:,} VMs (vcsim)",
        assets=args.hosts + args.vms,
        nominal_assets=NOMINAL_HOSTS + NOMINAL_VMS,
        seed=0,
        quick=args.quick,
    )
    for name in names:
        report.details[name] = run_shape(SHAPES[name], args, binary, report)
    common.finish(report)


if __name__ == "__main__":
    main()
