"""The simulated vCenter's own controls, which later tests (the vsphere driver's) rely on."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import PASSWORD, USER, require_pyvmomi, set_host_connection, start_vcsim, stop_vcsim

require_pyvmomi()


def _connection_states(url: str) -> dict[str, str]:
    from pyVim import connect
    from pyVmomi import vim

    parts = urlsplit(url)
    si = connect.SmartConnect(protocol="http", host=parts.hostname, port=parts.port, user=USER, pwd=PASSWORD)  # type: ignore[no-untyped-call]
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        return {h.name: str(h.runtime.connectionState) for h in view.view}
    finally:
        connect.Disconnect(si)  # type: ignore[no-untyped-call]


def test_a_host_disconnects_and_reconnects_on_command(vcsim_binary: Path) -> None:
    process, url = start_vcsim(vcsim_binary, "-cluster", "1", "-host", "2", "-vm", "1", "-ds", "1")
    try:
        assert set(_connection_states(url).values()) == {"connected"}
        set_host_connection(process, "DC0_C0_H1", connected=False)
        assert _connection_states(url) == {"DC0_C0_H0": "connected", "DC0_C0_H1": "disconnected"}
        set_host_connection(process, "DC0_C0_H1", connected=True)
        assert set(_connection_states(url).values()) == {"connected"}
        with pytest.raises(ValueError, match="no such host"):
            set_host_connection(process, "DC0_C0_H9", connected=False)
    finally:
        stop_vcsim(process)
