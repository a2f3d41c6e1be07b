"""A real simulated vCenter for the vSphere tests: govmomi's vcsim, built from Debian's packages.

``vcsim/main.go`` is built once (``go build``, GOPATH=/usr/share/gocode, GO111MODULE=off) into a cache
directory (``$RINGFENCE_TEST_CACHE``, default ``$TMPDIR/ringfence-test-cache``) keyed by the hash of its source,
so only the first run after a change pays for the build. Without
``go`` or govmomi the tests are skipped, unless ``RINGFENCE_REQUIRE_SERVICES=1`` (as in CI): then they fail.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import select
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pg_schemas import REQUIRE_SERVICES_ENV

SOURCE = Path(__file__).parent / "vcsim" / "main.go"
GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src" / "github.com" / "vmware" / "govmomi" / "simulator"
INSTALL = "apt-get install golang-go golang-github-vmware-govmomi-dev"
USER, PASSWORD = "ringfence", "vcsim-password"


def _missing(message: str) -> None:
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{message} ({INSTALL}), and {REQUIRE_SERVICES_ENV}=1 says the vSphere tests must run")
    pytest.skip(f"{message}: {INSTALL}")


def require_pyvmomi() -> None:
    """At a test module's top: skip it without the vsphere extra, or fail with RINGFENCE_REQUIRE_SERVICES=1."""
    if importlib.util.find_spec("pyVmomi") is not None:
        return
    message = "pyVmomi is not installed: pip install 'ringfence[vsphere]'"
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_SERVICES_ENV}=1 says the vSphere tests must run", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def _cache_dir() -> Path:
    root = Path(os.environ.get("RINGFENCE_TEST_CACHE") or Path(tempfile.gettempdir()) / "ringfence-test-cache")
    return root / "vcsim"


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The built simulator: reused while main.go and the Go toolchain are unchanged."""
    go = shutil.which("go")
    if go is None:
        _missing("go is not installed")
    if not GOVMOMI.is_dir():
        _missing(f"govmomi's simulator is not in {GOVMOMI}")
    assert go is not None
    return build_vcsim(go)


def build_vcsim(go: str) -> Path:
    """Build main.go into the cache unless it is there (bench/vsphere_import.py builds it this way too)."""
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    # Keyed by the source, the Go release and the installed govmomi: a change to any of them rebuilds.
    govmomi = (GOVMOMI.parent / "go.mod").read_bytes() + str((GOVMOMI / "model.go").stat().st_mtime_ns).encode()
    key = hashlib.sha256(SOURCE.read_bytes() + version.encode() + govmomi).hexdigest()[:16]
    cache = _cache_dir()
    binary = cache / f"vcsim-{key}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    # Parallel workers (pytest-xdist) each ask: one builds, the others wait for it and reuse the binary.
    with (cache / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            _build(go, binary, cache)
    return binary


def _build(go: str, binary: Path, cache: Path) -> None:
    env = {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOCACHE": str(cache / "gocache"),
        "GOFLAGS": "",
    }
    partial = binary.with_suffix(f".{os.getpid()}.partial")
    built = subprocess.run(
        [go, "build", "-o", str(partial), str(SOURCE)], env=env, capture_output=True, text=True, timeout=600
    )
    if built.returncode != 0:  # go and govmomi are there: a build failure is a bug to see, not a skip
        pytest.fail(f"vcsim did not build: {built.stderr.strip()[-2000:]}")
    partial.replace(binary)  # atomic: a reader sees a whole binary or none


@dataclass(frozen=True)
class VCenter:
    url: str
    user: str
    password: str


def start_vcsim(binary: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the simulator; returns the process and the URL it printed."""
    process = subprocess.Popen(
        [str(binary), "-user", USER, "-password", PASSWORD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        _, errors = process.communicate(timeout=10)
        raise RuntimeError(f"vcsim did not start: {errors[-2000:]}")
    return process, url


def stop_vcsim(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()  # main.go serves until stdin closes
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="session")
def vcenter(vcsim_binary: Path) -> Iterator[VCenter]:
    """A simulated vCenter: 1 datacenter, 4 clusters × 8 hosts (HA failover 1, 2, 1, off), 4 VMs a cluster."""
    process, url = start_vcsim(vcsim_binary, "-cluster", "4", "-host", "8", "-vm", "4", "-ds", "2")
    try:
        yield VCenter(url=url, user=USER, password=PASSWORD)
    finally:
        stop_vcsim(process)


def set_host_connection(process: subprocess.Popen[str], host: str, *, connected: bool) -> None:
    """Disconnect (or reconnect) a simulated host by its vCenter name: a host failing, as vCenter sees it."""
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(f"{'connect' if connected else 'disconnect'} {host}\n")
    process.stdin.flush()
    ready, _, _ = select.select([process.stdout], [], [], 10)  # a simulator that does not answer fails, not hangs
    answer = process.stdout.readline().strip() if ready else "no answer in 10 s"
    if answer != "ok":
        raise ValueError(f"vcsim: {answer} ({host})")


# ------------------------------------------------------------------------------------------ the vsphere driver's


@dataclass
class Simulator:
    """One simulated vCenter of a test's own (the driver changes it): its process, for ``disconnect`` lines, and
    a pyVmomi session reading what vCenter shows, as the tests' own eyes (apart from the driver's)."""

    process: subprocess.Popen[str]
    url: str
    _si: object = None

    def options(self, **extra: str) -> dict[str, str]:
        """The vsphere driver's options for this vCenter (``extra`` added)."""
        return {"server": self.url, "user": USER, "password": PASSWORD, **extra}

    def set_connection(self, host: str, *, connected: bool) -> None:
        set_host_connection(self.process, host, connected=connected)

    def hosts(self) -> dict[str, dict[str, object]]:
        """Each host by name: cluster, connection, maintenance mode and the powered-on VMs on it (one round trip)."""
        from pyVmomi import vim

        found = self._read(
            {
                vim.HostSystem: ["name", "parent", "runtime.connectionState", "runtime.inMaintenanceMode"],
                vim.VirtualMachine: ["name", "runtime.host", "runtime.powerState"],
                vim.ClusterComputeResource: ["name"],
            }
        )
        names = {moref: str(props["name"]) for moref, (_, props) in found.items()}
        running: dict[str, list[str]] = {}
        for _, (obj, props) in found.items():  # by the VM's own host: vcsim's host.vm keeps VMs moved away
            if isinstance(obj, vim.VirtualMachine) and str(props.get("runtime.powerState")) == "poweredOn":
                running.setdefault(props["runtime.host"]._moId, []).append(str(props["name"]))
        return {
            str(props["name"]): {
                "cluster": names.get(props["parent"]._moId, ""),
                "connection": str(props["runtime.connectionState"]),
                "maintenance": bool(props["runtime.inMaintenanceMode"]),
                "vms": sorted(running.get(moref, [])),
            }
            for moref, (obj, props) in found.items()
            if isinstance(obj, vim.HostSystem)
        }

    def snapshots(self) -> dict[str, list[str]]:
        """Each VM by name: the names of its snapshots (read through the property collector: vcsim panics on
        ``vm.snapshot`` read as an attribute once its last snapshot is gone)."""
        from pyVmomi import vim

        found: dict[str, list[str]] = {}
        for _, props in self._read({vim.VirtualMachine: ["name", "snapshot"]}).values():
            names: list[str] = []
            stack = list(getattr(props.get("snapshot"), "rootSnapshotList", None) or ())
            while stack:
                node = stack.pop()
                names.append(node.name)
                stack.extend(node.childSnapshotList or ())
            found[str(props["name"])] = names
        return found

    def remove_snapshot(self, moref: str) -> None:
        """Remove a snapshot behind the driver's back (a person tidying up in the vSphere Client)."""
        import time

        from pyVmomi import vim

        task = vim.vm.Snapshot(moref, self._session()._stub).RemoveSnapshot_Task(removeChildren=False)
        for _ in range(100):
            if str(self._read_one(task, "info.state")) in ("success", "error"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"vcsim did not remove snapshot {moref}")

    def _read_one(self, obj: object, path: str) -> object:
        from pyVmomi import vmodl

        collector = vmodl.query.PropertyCollector
        spec = collector.FilterSpec(
            objectSet=[collector.ObjectSpec(obj=obj)], propSet=[collector.PropertySpec(type=type(obj), pathSet=[path])]
        )
        [item] = self._session().RetrieveContent().propertyCollector.RetrieveContents([spec])
        return item.propSet[0].val

    def power(self) -> dict[str, str]:
        from pyVmomi import vim

        vms = self._read({vim.VirtualMachine: ["name", "runtime.powerState"]}).values()
        return {str(props["name"]): str(props["runtime.powerState"]) for _, props in vms}

    def _read(self, paths: dict[type, list[str]]) -> dict[str, tuple[object, dict[str, object]]]:
        """Properties of every object of the given types, through one container view and the property collector."""
        from pyVmomi import vim, vmodl

        content = self._session().RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, list(paths), True)
        try:
            collector = vmodl.query.PropertyCollector
            spec = collector.FilterSpec(
                objectSet=[
                    collector.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[collector.TraversalSpec(type=vim.view.ContainerView, path="view")],
                    )
                ],
                propSet=[collector.PropertySpec(type=kind, pathSet=names) for kind, names in paths.items()],
            )
            return {
                item.obj._moId: (item.obj, {p.name: p.val for p in item.propSet})
                for item in content.propertyCollector.RetrieveContents([spec])
            }
        finally:
            view.Destroy()

    def _session(self):  # type: ignore[no-untyped-def]
        from urllib.parse import urlsplit

        from pyVim import connect

        if self._si is None:
            parts = urlsplit(self.url)
            self._si = connect.SmartConnect(  # type: ignore[no-untyped-call]
                protocol="http", host=parts.hostname, port=parts.port, user=USER, pwd=PASSWORD
            )
        return self._si

    def stop(self) -> None:
        if self._si is not None:
            from pyVim import connect

            connect.Disconnect(self._si)  # type: ignore[no-untyped-call]
            self._si._stub.DropConnections()  # type: ignore[attr-defined]
            self._si = None
        if self.process.poll() is None:
            stop_vcsim(self.process)


@pytest.fixture
def simulator(vcsim_binary: Path) -> Iterator[Callable[..., Simulator]]:
    """Start simulated vCenters of a test's own: ``simulator("-cluster", "1", "-host", "3")``; all stopped after."""
    started: list[Simulator] = []

    def start(*args: str) -> Simulator:
        process, url = start_vcsim(vcsim_binary, *args)
        started.append(Simulator(process, url))
        return started[-1]

    try:
        yield start
    finally:
        for one in started:
            one.stop()
