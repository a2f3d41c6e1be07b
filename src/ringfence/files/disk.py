"""Reading and writing the files ringfence works with (an adapter: this is where file I/O lives).

Reads turn every operating-system failure into an :class:`InputError` naming the file; writes go to a
temporary file beside the target and are renamed into place, so nothing is ever half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import Estate, parse_estate_text

T = TypeVar("T")

SAMPLE_ESTATE = "city-general"


def read_text(path: Path | str) -> str:
    """The text of a file, or an InputError that says why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError([Problem("no such file", source=str(path))]) from None
    except IsADirectoryError:
        raise InputError([Problem("is a directory, not a file", source=str(path))]) from None
    except PermissionError:
        raise InputError([Problem("permission denied", source=str(path))]) from None
    except UnicodeDecodeError as exc:
        raise InputError([Problem(f"is not UTF-8 text (byte {exc.start})", source=str(path))]) from None


def read_with(path: Path | str, parse: Callable[[str, str], T]) -> T:
    """Read ``path`` and hand its text to a pure parser that takes ``(text, source_name)``."""
    return parse(read_text(path), str(path))


def read_estate(path: Path | str) -> Estate:
    return read_with(path, parse_estate_text)


def examples_dir() -> Path:
    """The bundled examples, installed with the package so the demo finds them from anywhere."""
    return Path(str(resources.files("ringfence") / "examples"))


def sample_estate_path() -> Path:
    return examples_dir() / SAMPLE_ESTATE / "estate.yaml"


def dump_document(document: Any, path: Path | str | None = None, *, as_json: bool | None = None) -> str:
    """Serialise a document as YAML (block style, keys in the order given) or JSON, chosen by suffix."""
    if as_json is None:
        as_json = path is not None and Path(path).suffix.lower() == ".json"
    if as_json:
        return json.dumps(document, indent=None, separators=(",", ":")) + "\n"
    return str(yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=120))


class _PlainDumper(yaml.CSafeDumper if hasattr(yaml, "CSafeDumper") else yaml.SafeDumper):  # type: ignore[misc]
    """Writes shared sub-objects out in full: an estate file people read has no ``&id001`` anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write all of ``text`` (as UTF-8) or nothing: see :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write all of ``data`` or nothing: a temporary file in the same directory, then a rename.

    The one file writer of the package: a reader (a person, a printer, the next run) never finds half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp creates the file for its owner only; a report or estate file is as shareable as any other.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_document(document: Any, path: Path | str) -> None:
    write_text_atomic(path, dump_document(document, path))
