"""`ringfence import ansible`: hosts read by Ansible itself, mapped to assets.

The fixtures are real inventories; the tests run real ansible-core (in the child process the
importer starts), so ranges, children, group_vars/ and host_vars/ and variable precedence are
Ansible's own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ringfence.core.errors import InputError
from ringfence.core.estate import parse_estate_document
from ringfence.files.importers import import_ansible_inventory
from ringfence.files.importers.ansible import InventoryHost, asset_id_for_host, estate_from_inventory_hosts

DATA = Path(__file__).parent / "data"
CITY = DATA / "city_general"

_ESX = {
    "kind": "host",
    "site": "city",
    "supplier": "vmware",
    "software": [{"product": "vmware/esxi", "version": "7.0.2"}],
}
_ESX_ATTRS = {
    "ansible_user": "svc_ansible",
    "cluster": "prod-a",
    "dns_domain": "city.local",
    "group.city": "true",
    "group.esx_prod": "true",
    "model": "PowerEdge R750",
    "monitored": "true",
    "nic_driver": "i40en-1.10",
    "patch_window": "wed",
}
_EPR_APP_SOFTWARE = [
    {"product": "crowdstrike/falcon", "version": "7.15"},
    {"product": "intersystems/cache", "version": "2018.1"},
]
_EPR_APP_REQUIRES = ["epr-db-1", {"any": 1, "where": "kind=host,attrs.cluster=prod-a"}]
_EPR_APP_ATTRS = {
    "ansible_user": "svc_ansible",
    "dns_domain": "city.local",
    "group.city": "true",
    "group.epr": "true",
    "group.epr_app": "true",
    "monitored": "true",
    "os": "windows-2019",
    # [epr:vars] in the inventory says sun, group_vars/all says sat: Ansible ranks inventory-adjacent
    # group_vars/all above group variables written in the inventory file.
    "patch_window": "sat",
}

CITY_ASSETS = [
    *(
        {
            "id": f"esx-a{n}.city.local",
            **_ESX,
            "attrs": _ESX_ATTRS,
        }
        for n in (1, 2, 3)
    ),
    {
        "id": "epr-app-01",
        "kind": "vm",
        "site": "city",
        "attrs": {
            "ansible_host": "10.1.0.11",
            "ansible_inventory_hostname": "EPR-App-01",
            **_EPR_APP_ATTRS,
        },
        "software": _EPR_APP_SOFTWARE,
        "requires": _EPR_APP_REQUIRES,
    },
    {
        "id": "epr-app-02",
        "kind": "vm",
        "site": "city",
        "attrs": {
            "ansible_host": "10.1.0.12",
            "ansible_inventory_hostname": "EPR-App-02",
            "maintenance_window": "sun 02:00",  # host_vars/EPR-App-02.yml
            **_EPR_APP_ATTRS,
        },
        "software": _EPR_APP_SOFTWARE,
        "requires": _EPR_APP_REQUIRES,
    },
    {
        "id": "epr-db-1",
        "kind": "vm",
        "site": "city",
        "attrs": {
            "ansible_host": "10.1.0.21",
            "ansible_port": "2222",
            "ansible_user": "svc_ansible",
            "db_port": "1972",
            "dns_domain": "city.local",
            "group.city": "true",
            "group.epr": "true",
            "group.epr_db": "true",
            "monitored": "true",
            "os": "rhel-8",
            "patch_window": "sat",
        },
        "requires": [{"any": 2, "of": ["esx-a1.city.local", "esx-a2.city.local", "esx-a3.city.local"]}],
    },
]


@pytest.fixture(scope="module")
def city_document() -> dict[str, object]:
    return import_ansible_inventory(CITY / "hosts.ini")


def test_ini_inventory_with_ranges_children_group_vars_and_host_vars(city_document: dict[str, object]) -> None:
    assert city_document == {
        "apiVersion": "ringfence/v1",
        "estate": "hosts",
        "suppliers": [{"id": "crowdstrike"}, {"id": "intersystems"}, {"id": "vmware"}],
        "services": [],
        "assets": CITY_ASSETS,
    }


def test_secrets_vaulted_values_and_lists_never_reach_the_document(city_document: dict[str, object]) -> None:
    text = repr(city_document)
    # ansible_password ([city:vars]), api_token (group_vars), a !vault value (host_vars) and a
    # vault-encrypted file (group_vars/all/vault.yml, skipped undecrypted), and a list (ntp_servers).
    for absent in ("not-a-real-password", "abc123", "licence", "vault_", "hunter2", "never-seen", "ntp"):
        assert absent not in text
    assert (CITY / "group_vars" / "all" / "vault.yml").read_text().startswith("$ANSIBLE_VAULT;")


def test_imported_inventory_is_a_valid_estate(city_document: dict[str, object]) -> None:
    estate = parse_estate_document(city_document, source="hosts.ini")

    assert len(estate.assets) == 6
    assert estate.warnings == ()


def test_yaml_inventory_with_a_letter_range() -> None:
    document = import_ansible_inventory(DATA / "north_yaml" / "inventory.yml", estate_name="north")

    switch = {
        "kind": "network",
        "site": "north",
        "supplier": "cisco",
        "attrs": {"group.network": "true", "role": "core"},
        "software": [{"product": "cisco/ios-xe", "version": "17.9.4"}],
    }
    assert document == {
        "apiVersion": "ringfence/v1",
        "estate": "north",
        "suppliers": [{"id": "cisco"}],
        "services": [],
        "assets": [
            {"id": "core-sw-a", **switch},
            {"id": "core-sw-b", **switch},
            {
                "id": "pacs-app",
                "kind": "vm",
                "name": "PACS application server",
                "site": "north",
                "attrs": {"group.pacs": "true"},
                "requires": [{"any": 1, "of": ["core-sw-a", "core-sw-b"]}],
            },
            {
                "id": "pacs-store",
                "kind": "storage",
                "site": "north",
                "attrs": {
                    "capacity_tb": "120.5",
                    "group.pacs": "true",
                    "installed": "2021-03-04",
                    "replicated": "false",
                },
            },
        ],
    }
    assert len(parse_estate_document(document, source="inventory.yml").assets) == 4


def test_the_users_ansible_settings_are_ignored_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    hostile = "[inventory]\nenable_plugins = host_list\n[defaults]\nvars_plugins_enabled = none_such\n"
    (tmp_path / "user.cfg").write_text(hostile)
    (tmp_path / "ansible.cfg").write_text(hostile)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "user.cfg"))
    monkeypatch.setenv("ANSIBLE_INVENTORY_ENABLED", "host_list")
    monkeypatch.setenv("ANSIBLE_VARS_ENABLED", "none_such")

    # The inventory directory as the source: Ansible reads hosts.ini in it and skips group_vars/.
    document = import_ansible_inventory(CITY)

    assert document["estate"] == "city_general"
    assert document["assets"] == CITY_ASSETS
    assert list(home.iterdir()) == []  # no ~/.ansible
    assert os.environ["ANSIBLE_INVENTORY_ENABLED"] == "host_list"  # our own environment is untouched


def test_an_executable_inventory_is_never_run(tmp_path: Path) -> None:
    script = tmp_path / "inventory"
    script.write_text('#!/bin/sh\ntouch "$(dirname "$0")/ran"\necho \'{"all": {"hosts": ["evil"]}}\'\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

    with pytest.raises(InputError) as caught:
        import_ansible_inventory(script)

    assert not (tmp_path / "ran").exists()
    assert {p.source for p in caught.value.problems} == {str(script)}


def test_a_malformed_ini_inventory_reports_what_ansible_said() -> None:
    path = DATA / "bad_ini" / "hosts.ini"

    with pytest.raises(InputError) as caught:
        import_ansible_inventory(path)

    (problem,) = caught.value.problems
    assert problem.source == str(path)
    assert problem.message == (
        "ansible's ini inventory plugin could not read it: "
        "Failed to parse inventory: Expected key=value host variable assignment, got: foo"
    )


def test_a_malformed_yaml_inventory_reports_the_line() -> None:
    path = DATA / "bad_yaml" / "inventory.yml"

    with pytest.raises(InputError) as caught:
        import_ansible_inventory(path)

    (problem,) = caught.value.problems
    assert (problem.source, problem.line) == (str(path), 5)
    assert problem.message.startswith("ansible's yaml inventory plugin could not read it: YAML parsing failed")


def test_a_malformed_group_vars_file_is_named_with_its_line() -> None:
    with pytest.raises(InputError) as caught:
        import_ansible_inventory(DATA / "bad_group_vars" / "hosts.ini")

    (problem,) = caught.value.problems
    assert problem.source == str(DATA / "bad_group_vars" / "group_vars" / "web.yml")
    assert problem.line == 3
    assert problem.message.startswith("ansible could not load the variables of host 'web1': YAML parsing failed")


def test_an_inventory_without_hosts_is_an_error() -> None:
    with pytest.raises(InputError, match="the inventory lists no hosts"):
        import_ansible_inventory(DATA / "no_hosts" / "hosts.ini")


def test_hostnames_that_would_share_an_id_are_an_error() -> None:
    with pytest.raises(InputError) as caught:
        import_ansible_inventory(DATA / "name_clash" / "hosts.ini")

    assert [p.message for p in caught.value.problems] == [
        "hosts 'Web01' and 'web01' would both become asset 'web01'; rename one of them in the inventory"
    ]


def test_bad_ringfence_variables_are_all_reported_naming_host_and_variable() -> None:
    path = DATA / "bad_ringfence_vars" / "hosts.ini"

    with pytest.raises(InputError) as caught:
        import_ansible_inventory(path)

    assert {p.source for p in caught.value.problems} == {str(path)}
    messages = [p.message for p in caught.value.problems]
    assert messages[0].startswith("host 'web1': variable 'ringfence_sight' is not one ringfence reads")
    assert messages[1:4] == [
        "host 'web2': ringfence_software: software 'nginx' is not written VENDOR/NAME@VERSION "
        "(for example vmware/esxi@7.0.2)",
        "host 'web2': ringfence_requires: requirement 'any:2:' names no ids",
        "host 'web3': ringfence_site must be a single value, not a list",
    ]
    assert messages[4].startswith("host 'web1': ringfence_kind: 'server': input should be 'host', 'vm'")
    assert len(messages) == 5


def test_a_missing_inventory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        import_ansible_inventory(tmp_path / "nope.ini")


# ----------------------------------------------------------------- the mapping alone (no ansible needed)


def test_asset_ids_from_hostnames() -> None:
    assert asset_id_for_host("web01.city.local") == "web01.city.local"
    assert asset_id_for_host("EPR_App 01") == "epr_app-01"
    assert asset_id_for_host("10.0.0.5") == "10.0.0.5"
    assert asset_id_for_host("fe80::1") == "fe80-1"
    assert asset_id_for_host("Zürich-PC") == "z-rich-pc"
    assert asset_id_for_host("***") == ""


def test_which_variables_become_attributes() -> None:
    host = InventoryHost(
        name="pc-1",
        groups=("clinic-a", "desktops"),
        variables={
            "ansible_host": "10.0.0.9",
            "ansible_password": "x",
            "ansible_become_pass": "x",
            "ansible_ssh_private_key_file": "/k",
            "db_pwd": "x",
            "api_key": "x",
            "auth_token": "x",
            "client_secret": "x",
            "vault_db": "x",
            "smb_credentials": "x",
            "os": "windows-11",
            "ram_gb": 16,
            "weight": 1.5,
            "encrypted": True,
            "nothing": None,
            "printers": ["p1", "p2"],
            "bios": {"vendor": "dell"},
            "odd name": "skipped: not a name a selector can hold",
        },
    )

    document = estate_from_inventory_hosts([host], estate_name="clinic", source="inv")

    assert document["assets"] == [
        {
            "id": "pc-1",
            "kind": "host",
            "attrs": {
                "ansible_host": "10.0.0.9",
                "encrypted": "true",
                "group.clinic-a": "true",
                "group.desktops": "true",
                "os": "windows-11",
                "ram_gb": "16",
                "weight": "1.5",
            },
        }
    ]


def test_ringfence_variables_as_lists_and_mappings() -> None:
    host = InventoryHost(
        name="epr-app-1",
        groups=(),
        variables={
            "ringfence_kind": "vm",
            "ringfence_software": [
                {"product": "crowdstrike/falcon", "version": "7.15", "supplier": "crowdstrike-uk"},
                "microsoft/windows@2019; microsoft/iis@10",
            ],
            "ringfence_requires": ["epr-db-1", "any:2:a|b|c", {"any": 1, "where": "kind=host"}],
        },
    )

    document = estate_from_inventory_hosts([host], estate_name="e", source="inv")

    assert document["suppliers"] == [{"id": "crowdstrike-uk"}, {"id": "microsoft"}]
    assert document["assets"] == [
        {
            "id": "epr-app-1",
            "kind": "vm",
            "software": [
                {"product": "crowdstrike/falcon", "version": "7.15", "supplier": "crowdstrike-uk"},
                {"product": "microsoft/windows", "version": "2019"},
                {"product": "microsoft/iis", "version": "10"},
            ],
            "requires": ["epr-db-1", {"any": 2, "of": ["a", "b", "c"]}, {"any": 1, "where": "kind=host"}],
        }
    ]
