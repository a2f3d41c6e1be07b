"""Host variables that must not pose as what only the inventory says, and INI values kept as written.

Real inventories read by real ansible-core (in the importer's child process), as in test_import_ansible.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringfence.files.importers import import_ansible_inventory
from ringfence.files.importers.ansible import InventoryHost, _quoted_whole, estate_from_inventory_hosts

pytest.importorskip("ansible", reason="the ansible extra is not installed")


def attrs_of(document: dict[str, object], asset_id: str) -> dict[str, str]:
    assets = document["assets"]
    assert isinstance(assets, list)
    found = next(a for a in assets if a["id"] == asset_id)
    return dict(found.get("attrs", {}))


def test_a_variable_named_like_a_group_makes_no_membership(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n"
        "  children:\n"
        "    web:\n"
        "      hosts:\n"
        "        web-1:\n"
        "          group.db: true\n"
        "          group.web: false\n"
        "          role: frontend\n",
        encoding="utf-8",
    )
    attrs = attrs_of(import_ansible_inventory(inventory), "web-1")
    # Only the group web-1 is really in: not db, and web stays a membership whatever a variable says.
    assert attrs == {"group.web": "true", "role": "frontend"}


def test_a_variable_named_ansible_inventory_hostname_is_not_the_hostname(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[clinic]\n"
        "EPR_App01 ansible_inventory_hostname=evil.example os=windows\n"
        "pc-1 ansible_inventory_hostname=evil\n",
        encoding="utf-8",
    )
    document = import_ansible_inventory(inventory)
    # The ansible driver targets a host by this attribute: it is always the inventory's own name, or absent
    # when the asset id already is that name.
    assert attrs_of(document, "epr_app01")["ansible_inventory_hostname"] == "EPR_App01"
    assert "ansible_inventory_hostname" not in attrs_of(document, "pc-1")


def test_reserved_names_are_left_out_of_hosts_given_directly() -> None:
    host = InventoryHost(
        name="Ward PC",
        groups=("ward",),
        variables={"group.icu": True, "group.ward": "false", "ansible_inventory_hostname": "other", "os": "w11"},
    )
    (asset,) = estate_from_inventory_hosts([host], estate_name="e", source="inv")["assets"]  # type: ignore[misc]
    assert asset["attrs"] == {"ansible_inventory_hostname": "Ward PC", "group.ward": "true", "os": "w11"}


def test_a_quoted_ini_value_stays_a_string(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[db]\n"
        'db-1 version="10.10" build=\'007\' spaced="Ward 7" plain=10.10 count=08.0 flag="True" # note="1.0"\n'
        "db-2 ringfence_requires=\"['db-1']\"\n"
        "[db:vars]\n"
        'group_version="10.10"\n'
        "group_plain=10.10\n",
        encoding="utf-8",
    )
    document = import_ansible_inventory(inventory)
    attrs = attrs_of(document, "db-1")
    assert attrs["version"] == "10.10"  # Ansible alone gives the number 10.1
    assert attrs["build"] == "007"
    assert attrs["spaced"] == "Ward 7"
    assert attrs["group_version"] == "10.10"
    # Unquoted, a value is what Ansible makes of it: a Python literal where it is one.
    assert attrs["plain"] == "10.1"
    assert attrs["group_plain"] == "10.1"
    assert attrs["count"] == "8.0"
    assert attrs["flag"] == "True"  # Ansible alone gives the boolean true
    assert "note" not in attrs  # after '#': a comment
    # A quoted list is still a list: quoting is the only way to write one on a host line.
    (db_2,) = [a for a in document["assets"] if a["id"] == "db-2"]  # type: ignore[union-attr]
    assert db_2["requires"] == ["db-1"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('h a="10.10" b=10.10', {"a": "10.10"}),
        ("h a='x y' b=\"it's\"", {"a": "x y", "b": "it's"}),
        ('h a="x"y b=x"y" c="x"\'y\'', {}),  # quoted in part: not a quoted value
        ('h a="x\\"y"', {"a": 'x"y'}),
        ('h a="1" # b="2"', {"a": "1"}),
        ('h a="unclosed', {}),
        ("h", {}),
    ],
)
def test_which_ini_values_count_as_quoted(line: str, expected: dict[str, str]) -> None:
    assert _quoted_whole(line) == expected


def test_a_dynamic_inventory_imports_through_ansible_inventory_list(tmp_path: Path) -> None:
    """The route docs/importers.md gives for dynamic inventories: `ansible-inventory --list --yaml`, then
    import the file it wrote. (An INI source stands in for a cloud plugin: the output is the same shape.)"""
    program = Path(sys.executable).with_name("ansible-inventory")
    if not program.exists():
        pytest.skip("ansible-inventory is not installed next to this Python")
    source = tmp_path / "plugin.ini"
    source.write_text("[web]\nweb-[1:2] os=linux\n[web:vars]\nringfence_site=city\n", encoding="utf-8")
    listed = tmp_path / "inv.yml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")} | {"ANSIBLE_HOME": str(tmp_path)}
    with listed.open("w", encoding="utf-8") as out:
        subprocess.run(
            [str(program), "-i", str(source), "--list", "--yaml"], stdout=out, env=env, check=True, timeout=300
        )
    document = import_ansible_inventory(listed)
    assert [(a["id"], a.get("site"), a["attrs"]) for a in document["assets"]] == [  # type: ignore[union-attr]
        ("web-1", "city", {"group.web": "true", "os": "linux"}),
        ("web-2", "city", {"group.web": "true", "os": "linux"}),
    ]
