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
import http.client
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
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
    import_warnings,
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
    login: VCenterLogin,
    *,
    estate_name: str | None = None,
    sites: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """The estate document for everything the account can see in vCenter (docs/vsphere.md).

    What the user should know about the inventory (a disconnected host, a cluster without HA) goes to
    ``warn``, one sentence each naming the vCenter object; an inventory with no host at all is an error.
    """
    facts = read_vcenter(login)
    if not facts.hosts:
        raise InputError(
            f"{_where(login)} shows user '{login.user}' no hosts, so there is nothing to import; if it has hosts, "
            "give the account the Read-only role on the vCenter root with Propagate to children (docs/vsphere.md)"
        )
    for sentence in import_warnings(facts):
        if warn is not None:
            warn(sentence)
    host = urlsplit(_normalised(login.server)).hostname or "vcenter"
    return estate_from_facts(facts, estate_name or host, sites=sites)


def _where(login: VCenterLogin) -> str:
    return f"vCenter at {_normalised(login.server.strip())}"


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


def read_vcenter(
    login: VCenterLogin, *, timings: MutableMapping[str, float] | None = None, page: int = _PAGE
) -> VCenterFacts:
    """Log in, read every datacenter, cluster, host, VM and datastore, log out.

    ``timings`` (for bench/vsphere_import.py) receives the seconds of each phase: ``connect``,
    ``property collection`` (the round trips to vCenter) and ``facts`` (reading the answers); ``page`` is the
    objects per page of the property collector.
    """
    require_extra("vsphere", "ringfence import vsphere")
    from pyVim import connect

    pyvim: Any = connect  # pyVmomi's functions carry no annotations
    phases: MutableMapping[str, float] = timings if timings is not None else {}
    start = time.perf_counter()
    si = _connect(login)
    phases["connect"] = time.perf_counter() - start
    try:
        start = time.perf_counter()
        objects = _read_inventory(si, _where(login), page)
        phases["property collection"] = time.perf_counter() - start
    finally:
        with contextlib.suppress(Exception):  # logging out is a courtesy: the facts are already read
            pyvim.Disconnect(si)
    start = time.perf_counter()
    facts = _facts(objects)
    phases["facts"] = time.perf_counter() - start
    return facts


def _connect(login: VCenterLogin) -> Any:
    from pyVim import connect
    from pyVmomi import vim

    pyvim: Any = connect  # pyVmomi's functions carry no annotations

    protocol, host, port, path = _endpoint(login.server)
    where = _where(login)
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
        "runtime.connectionState",
    ],
    "VirtualMachine": ["runtime.host", "datastore", "config.guestFullName", "config.guestId", "config.template"],
    "Datastore": ["summary.type"],
}


def _read_inventory(si: Any, where: str, page: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every object's properties; a failure half-way (the connection dropped, a fault) is one sentence."""
    from pyVmomi import vmodl

    try:
        return _collect(si, page)
    except vmodl.MethodFault as exc:  # vim.fault.NoPermission among them: vCenter's own refusal
        message = getattr(exc, "msg", "") or type(exc).__name__
        raise InputError(f"{where} failed while the inventory was read: {message}") from None
    except (OSError, http.client.HTTPException) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: the connection dropped while the inventory was read ({text})") from None


def _collect(si: Any, page: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """One container view of the whole inventory and one paged ``RetrievePropertiesEx`` over it.

    Reading properties object by object (``host.config.product``) costs a round trip each: tens of
    thousands for a large vCenter. The property collector returns every object's properties in pages.
    """
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
        return {obj._moId: (obj, props) for obj, props in _retrieve(content.propertyCollector, spec, page)}
    finally:
        with contextlib.suppress(Exception):  # a dropped connection must surface as itself, not as this
            view.Destroy()


def _retrieve(collector: Any, spec: Any, page: int) -> Iterator[tuple[Any, dict[str, Any]]]:
    from pyVmomi import vmodl as typed_vmodl

    vmodl: Any = typed_vmodl
    result = collector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page))
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
                    connection=str(props.get("runtime.connectionState") or "connected"),
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
