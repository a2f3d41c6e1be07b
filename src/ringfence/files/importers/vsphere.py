"""``ringfence import vsphere``: read datacenters, clusters, hosts, VMs and datastores from vCenter (pyVmomi).

This module is the I/O: one session, one property-collector walk of the whole inventory (a few round trips
whatever the size, paged by vCenter), then log out. What the facts mean as an estate is decided in
:mod:`ringfence.files.importers.vsphere_estate`, pure. pyVmomi is the ``vsphere`` extra, imported inside the
functions after :func:`ringfence.files.extras.require_extra`.

Every failure to reach or log in to vCenter is an :class:`~ringfence.core.errors.InputError` of one sentence
(exit status 2): the server, the certificate, the account are things the user fixes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ringfence.core.errors import InputError
from ringfence.files.extras import require_extra
from ringfence.files.importers.vsphere_estate import (
    ClusterFacts,
    DatastoreFacts,
    HostFacts,
    VCenterFacts,
    VmFacts,
    estate_from_facts,
)

__all__ = ["VCenterLogin", "import_vsphere", "read_vcenter"]

_PAGE = 1000
"""Objects per page of the property collector: vCenter's own default is 100; larger pages mean fewer trips."""


@dataclass(frozen=True)
class VCenterLogin:
    server: str
    """``https://vcenter.example.org`` (``/sdk`` optional); a bare host name means https."""
    user: str
    password: str
    insecure: bool = False
    """Accept any certificate (a lab's self-signed one): never for a production vCenter."""
    timeout: float = 30.0


def import_vsphere(
    login: VCenterLogin, *, estate_name: str | None = None, sites: Mapping[str, str] | None = None
) -> dict[str, object]:
    """The estate document for everything the account can see in vCenter (docs/vsphere.md)."""
    facts = read_vcenter(login)
    host = urlsplit(_normalised(login.server)).hostname or "vcenter"
    return estate_from_facts(facts, estate_name or host, sites=sites)


def _normalised(server: str) -> str:
    return server if "://" in server else f"https://{server}"


def _endpoint(server: str) -> tuple[str, str, int, str]:
    """``--server`` → protocol, host, port, path; a value that is not a URL is refused naming the option."""
    parts = urlsplit(_normalised(server.strip()))
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise InputError(f"--server '{server}' is not a vCenter address: write https://vcenter.example.org")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.path or "/sdk"


def read_vcenter(login: VCenterLogin) -> VCenterFacts:
    """Log in, read every datacenter, cluster, host, VM and datastore, log out."""
    require_extra("vsphere", "ringfence import vsphere")
    from pyVim import connect

    pyvim: Any = connect  # pyVmomi's functions carry no annotations
    si = _connect(login)
    try:
        return _collect(si)
    finally:
        with contextlib.suppress(Exception):  # logging out is a courtesy: the facts are already read
            pyvim.Disconnect(si)


def _connect(login: VCenterLogin) -> Any:
    from pyVim import connect
    from pyVmomi import vim

    pyvim: Any = connect  # pyVmomi's functions carry no annotations

    protocol, host, port, path = _endpoint(login.server)
    where = f"vCenter at {_normalised(login.server.strip())}"
    if not login.user:
        raise InputError("--user is required: the vCenter account to read the inventory with")
    try:
        return pyvim.SmartConnect(
            protocol=protocol,
            host=host,
            port=port,
            path=path,
            user=login.user,
            pwd=login.password,
            # Always our own context: pyVmomi silently skips verification for localhost when given none.
            sslContext=_tls_context(login.insecure) if protocol == "https" else None,
            httpConnectionTimeout=login.timeout,
        )
    except vim.fault.InvalidLogin:
        raise InputError(f"{where} refused user '{login.user}': wrong user name or password") from None
    except vim.fault.NoPermission:
        raise InputError(f"{where}: user '{login.user}' may not log in (see docs/vsphere.md, privileges)") from None
    except ssl.SSLCertVerificationError as exc:
        raise InputError(
            f"{where}: its certificate is not trusted ({exc.verify_message}); install the CA that signed it, "
            "or pass --insecure for a lab vCenter"
        ) from None
    except ssl.SSLError as exc:
        raise InputError(f"{where}: TLS failed ({exc.reason or exc}); is the address https?") from None
    except socket.gaierror:
        raise InputError(f"{where}: no such host name '{host}'") from None
    except TimeoutError:
        raise InputError(f"{where}: no answer within {login.timeout:g} s") from None
    except ConnectionRefusedError:
        raise InputError(f"{where}: connection refused (nothing listens on port {port})") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot connect ({exc.strerror or exc})") from None
    except Exception as exc:  # pyVmomi raises plain errors for a server that is not a vCenter
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: not a vCenter answering the vSphere API ({text})") from None


def _tls_context(insecure: bool) -> ssl.SSLContext:
    """The system's trusted CAs (and ``$SSL_CERT_FILE``), host name checked; nothing checked with ``--insecure``."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context()


_PROPERTIES: dict[str, list[str]] = {
    "ManagedEntity": ["name", "parent"],
    "ClusterComputeResource": ["host", "configurationEx"],
    "HostSystem": [
        "hardware.systemInfo.vendor",
        "hardware.systemInfo.model",
        "config.product.version",
        "config.product.build",
        "config.network.pnic",
    ],
    "VirtualMachine": ["runtime.host", "datastore", "config.guestFullName", "config.guestId", "config.template"],
    "Datastore": ["summary.type"],
}


def _collect(si: Any) -> VCenterFacts:
    from pyVmomi import vim
    from pyVmomi import vmodl as typed_vmodl

    vmodl: Any = typed_vmodl  # pyVmomi's data object constructors carry no annotations
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ManagedEntity], True)
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[
                vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        vmodl.query.PropertyCollector.TraversalSpec(
                            name="inventory", type=vim.view.ContainerView, path="view", skip=False
                        )
                    ],
                )
            ],
            propSet=[
                vmodl.query.PropertyCollector.PropertySpec(type=getattr(vim, kind), pathSet=paths)
                for kind, paths in _PROPERTIES.items()
            ],
        )
        objects = {obj._moId: (obj, props) for obj, props in _retrieve(content.propertyCollector, spec)}
    finally:
        view.Destroy()
    return _facts(objects)


def _retrieve(collector: Any, spec: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    from pyVmomi import vmodl as typed_vmodl

    vmodl: Any = typed_vmodl
    result = collector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=_PAGE))
    while result is not None:
        for item in result.objects:
            yield item.obj, {prop.name: prop.val for prop in item.propSet or ()}
        result = collector.ContinueRetrievePropertiesEx(result.token) if result.token else None


def _facts(objects: Mapping[str, tuple[Any, dict[str, Any]]]) -> VCenterFacts:
    from pyVmomi import vim

    def datacenter_of(moref: str) -> str:
        seen = 0
        while moref in objects and seen < 100:  # a parent chain is short; the bound guards a cycle
            obj, props = objects[moref]
            if isinstance(obj, vim.Datacenter):
                return str(props.get("name", moref))
            parent = props.get("parent")
            if parent is None:
                break
            moref, seen = parent._moId, seen + 1
        return ""

    def refs(values: Any) -> tuple[str, ...]:
        return tuple(v._moId for v in values or ())

    clusters: list[ClusterFacts] = []
    hosts: list[HostFacts] = []
    vms: list[VmFacts] = []
    datastores: list[DatastoreFacts] = []
    cluster_of: dict[str, str] = {}
    for moref, (obj, props) in objects.items():
        if isinstance(obj, vim.ClusterComputeResource):
            ha, failover = _ha(props.get("configurationEx"), len(props.get("host") or ()))
            clusters.append(
                ClusterFacts(
                    moref, str(props.get("name", moref)), datacenter_of(moref), ha, failover, refs(props.get("host"))
                )
            )
            cluster_of.update(dict.fromkeys(refs(props.get("host")), moref))
    for moref, (obj, props) in objects.items():
        if isinstance(obj, vim.HostSystem):
            hosts.append(
                HostFacts(
                    moref=moref,
                    name=str(props.get("name", moref)),
                    datacenter=datacenter_of(moref),
                    cluster=cluster_of.get(moref),
                    vendor=str(props.get("hardware.systemInfo.vendor") or ""),
                    model=str(props.get("hardware.systemInfo.model") or ""),
                    esxi_version=str(props.get("config.product.version") or ""),
                    esxi_build=str(props.get("config.product.build") or ""),
                    nic_drivers=tuple(str(n.driver) for n in props.get("config.network.pnic") or () if n.driver),
                )
            )
        elif isinstance(obj, vim.VirtualMachine):
            if props.get("config.template"):
                continue  # a template runs nothing: no asset to protect
            host = props.get("runtime.host")
            vms.append(
                VmFacts(
                    moref=moref,
                    name=str(props.get("name", moref)),
                    datacenter=datacenter_of(moref),
                    host=host._moId if host is not None else None,
                    datastores=refs(props.get("datastore")),
                    guest_os=str(props.get("config.guestFullName") or ""),
                    guest_id=str(props.get("config.guestId") or ""),
                )
            )
        elif isinstance(obj, vim.Datastore):
            datastores.append(
                DatastoreFacts(
                    moref, str(props.get("name", moref)), datacenter_of(moref), str(props.get("summary.type") or "")
                )
            )
    return VCenterFacts(tuple(clusters), tuple(hosts), tuple(vms), tuple(datastores))


def _ha(config: Any, hosts: int) -> tuple[bool, int]:
    """HA on, and how many host failures its admission control reserves room for (docs/vsphere.md).

    - ``failoverLevel`` when the policy gives one ("host failures cluster tolerates", also set by the
      percentage policy when vSphere computes the percentages, and by dedicated failover hosts);
    - dedicated failover hosts without it: their number;
    - explicit CPU and memory percentages: the whole hosts the smaller share covers, ⌊min(cpu, mem) × n / 100⌋;
    - admission control off: 0 (HA restarts VMs if there happens to be room; nothing is reserved).
    """
    from pyVmomi import vim

    das = getattr(config, "dasConfig", None)
    if das is None or not das.enabled:
        return False, 0
    if not das.admissionControlEnabled:
        return True, 0
    policy = das.admissionControlPolicy
    level = getattr(policy, "failoverLevel", None) or 0
    if level:
        return True, int(level)
    if isinstance(policy, vim.cluster.FailoverHostAdmissionControlPolicy):
        return True, len(policy.failoverHosts or ())
    if isinstance(policy, vim.cluster.FailoverResourcesAdmissionControlPolicy):
        share = min(policy.cpuFailoverResourcesPercent or 0, policy.memoryFailoverResourcesPercent or 0)
        return True, share * hosts // 100
    return True, 0
