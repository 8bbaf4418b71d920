"""Map IMAP folder names to safe, readable, reversible local relative paths.

This module owns one thing: turning an IMAP folder name (already decoded from
modified UTF-7 to a Python ``str``, e.g. ``"กล่องขาเข้า/สำคัญ"``) into a relative
path inside an account archive, and back.  It is pure (no I/O, stdlib only) and
applies the *same* rules on every OS, because archives are copied between
Linux, Windows and macOS and must mean the same thing everywhere.

Why the rules exist
-------------------
* **Hostile or buggy servers.**  Folder names are remote input.  A folder
  called ``"../../etc"`` or ``"/root"`` must never escape the archive, so
  ``"."``/``".."`` components, empty components and separators are escaped,
  and :func:`is_safe_relative` is a final guard for the stores.
* **Windows.**  ``\\ / : * ? " < > |`` and control characters are forbidden
  in file names; trailing spaces and dots are silently stripped; device names
  (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0-9``, ``LPT0-9``, superscript
  ``COM¹²³``/``LPT¹²³``, ``CONIN$``, ``CONOUT$``) are reserved in any case and
  with any extension (``aux.txt``).  A leading ``"."`` hides a file on Unix
  and is Dovecot's Maildir++ folder marker.
* **Maildir.**  A folder called ``cur``, ``new`` or ``tmp`` would clash with
  the Maildir subdirectories of its parent.
* **mbox.**  The mbox store writes folder ``A`` as file ``A.mbox`` next to a
  directory ``A/`` for its children, so a folder literally named ``A.mbox``
  is escaped (``A%2Embox``) and cannot collide.
* **Case-folding and Unicode normalisation.**  Windows and macOS fold case,
  and macOS (HFS+) normalises to NFD, so ``Sent``/``sent`` or NFC/NFD
  spellings of the same word would share one directory.  :func:`path_key`
  and :func:`unique_local_path` detect that and add ``~2``, ``~3``, …

Encoding (one component)
------------------------
Characters that must not appear literally are written as ``%XX`` escapes of
their UTF-8 bytes (upper-case hex).  Escaped everywhere: ``%`` itself, ``~``
(reserved for the suffixes this module adds, see below), ``/ \\ : * ? " < > |``
and ASCII controls 0x00-0x1F, 0x7F.  Escaped by position: a leading ``.`` or
space, a trailing ``.`` or space, the first character of a Windows device
name or of ``cur``/``new``/``tmp`` (case-insensitive), and the dot of a
trailing ``.mbox`` (case-insensitive).  The empty component becomes ``"%"``
(never produced otherwise, since every other ``%`` starts an escape).  All
other characters, including Thai, stay as readable UTF-8.  The encoding is
canonical: :func:`decode_component` accepts exactly the strings
:func:`encode_component` produces and is its exact inverse.

Suffixes (``~``)
----------------
A literal ``~`` never comes out of the encoding, so a ``~`` in a local name
always marks a suffix added here and such names can never collide with an
encoded folder name:

* ``~`` + 10 lower-case hex digits: the component was too long and was
  truncated (see :data:`COMPONENT_BUDGET`); the digits are the start of the
  SHA-256 of the full component's UTF-8.  :func:`is_truncated` detects it.
* ``~N`` (N = 2 … :data:`MAX_UNIQUE_COUNTER`): added by
  :func:`unique_local_path` to avoid a case/normalisation clash.

Names with suffixes cannot be decoded (the state database records the real
folder name); :func:`decode_component` raises :class:`ValueError` for them
rather than returning a wrong name.

Limits
------
* A component is at most :data:`COMPONENT_BUDGET` (200) UTF-8 bytes after
  encoding, plus up to :data:`UNIQUE_SUFFIX_ROOM` bytes of ``~N``: at most
  :data:`MAX_COMPONENT_BYTES` (206).  UTF-16 never needs more code units than
  UTF-8 needs bytes, so this also fits NTFS's 255 UTF-16 units, and leaves
  room for store suffixes such as ``.mbox`` within ext4's 255 bytes.
* A path has at most :data:`MAX_DEPTH` (100) components and at most
  :data:`MAX_PATH_BYTES` (3000) UTF-8 bytes (joined with ``/``), which keeps
  over 1000 bytes of Linux's 4096-byte ``PATH_MAX`` for the archive root and
  the stores' own file names.  :func:`local_path_for` raises
  :class:`ValueError` past these limits.  (Windows without long-path support
  has a 260-character limit; that is the stores' concern, not this module's.)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath

__all__ = [
    "COMPONENT_BUDGET",
    "EMPTY_TOKEN",
    "HASH_CHARS",
    "MAX_COMPONENT_BYTES",
    "MAX_DEPTH",
    "MAX_PATH_BYTES",
    "MAX_UNIQUE_COUNTER",
    "UNIQUE_SUFFIX_ROOM",
    "decode_component",
    "encode_component",
    "folder_name_for",
    "is_safe_component",
    "is_safe_relative",
    "is_truncated",
    "local_path_for",
    "path_key",
    "split_folder",
    "unique_local_path",
]

COMPONENT_BUDGET = 200
"""Maximum UTF-8 bytes of an encoded component (truncation marker included)."""
HASH_CHARS = 10
"""Hex digits of SHA-256 kept in a truncation marker."""
MAX_UNIQUE_COUNTER = 99_999
"""Largest ``~N`` that :func:`unique_local_path` tries before giving up."""
UNIQUE_SUFFIX_ROOM = 1 + len(str(MAX_UNIQUE_COUNTER))
"""Bytes reserved for one ``~N`` suffix."""
MAX_COMPONENT_BYTES = COMPONENT_BUDGET + UNIQUE_SUFFIX_ROOM
"""Hard per-component limit (UTF-8 bytes and UTF-16 units) of a local name."""
MAX_DEPTH = 100
"""Maximum number of components of a local path."""
MAX_PATH_BYTES = 3000
"""Maximum UTF-8 bytes of a whole local relative path."""
EMPTY_TOKEN = "%"
"""Local name of an empty folder-name component."""

_MARKER = "~"
_ALWAYS_ESCAPED = frozenset('%~/\\:*?"<>|\x7f') | frozenset(map(chr, range(0x20)))
_EDGE_ESCAPED = frozenset(". ")
_MAILDIR_RESERVED = frozenset({"cur", "new", "tmp", "dovecot-keywords"})  # keywords.py keeps a file of that name
_MBOX_SUFFIX = ".mbox"
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789¹²³"}
)
_ESCAPE_RUN = re.compile(r"((?:%[0-9A-F]{2})+)")
_SUFFIXED = re.compile(
    rf"(?P<body>[^~]+)(?P<hash>~[0-9a-f]{{{HASH_CHARS}}})?"
    rf"(?:~[1-9][0-9]{{0,{UNIQUE_SUFFIX_ROOM - 2}}})*"
)


# --------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------


def _check_delimiter(delimiter: str | None) -> None:
    if delimiter is not None and len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character or None: {delimiter!r}")


def split_folder(name: str, delimiter: str | None) -> tuple[str, ...]:
    """Split *name* on *delimiter* (None = flat), keeping empty components."""
    _check_delimiter(delimiter)
    if delimiter is None:
        return (name,)
    return tuple(name.split(delimiter))


# --------------------------------------------------------------------------
# Rules shared by the encoder and the validator
# --------------------------------------------------------------------------


def _is_windows_device(text: str) -> bool:
    """True for CON, aux.txt, "NUL .x", … (stem before the first dot)."""
    return text.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES


def _is_maildir_reserved(text: str) -> bool:
    return text.casefold() in _MAILDIR_RESERVED


def _has_mbox_suffix(text: str) -> bool:
    tail = text[-len(_MBOX_SUFFIX) :]
    return (
        len(tail) == len(_MBOX_SUFFIX)
        and tail[0] == "."
        and (tail[1:].casefold() == _MBOX_SUFFIX[1:])
    )


def _positions_to_escape(part: str) -> set[int]:
    """Indexes escaped because of where they are, not what they are."""
    last = len(part) - 1
    positions: set[int] = set()
    if part[0] in _EDGE_ESCAPED or _is_windows_device(part):
        positions.add(0)
    if _is_maildir_reserved(part):
        positions.add(0)
    if part[last] in _EDGE_ESCAPED:
        positions.add(last)
    if _has_mbox_suffix(part):
        positions.add(len(part) - len(_MBOX_SUFFIX))
    return positions


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# --------------------------------------------------------------------------
# Encoding and decoding one component
# --------------------------------------------------------------------------


def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def _encoded_units(part: str) -> list[str]:
    """One string per character of *part*: itself or its %XX escapes."""
    positions = _positions_to_escape(part)
    return [
        _escape_char(c) if c in _ALWAYS_ESCAPED or i in positions else c
        for i, c in enumerate(part)
    ]


def _truncate(units: list[str], part: str) -> str:
    """Keep whole units fitting the budget, then ``~`` + hash of *part*."""
    digest = hashlib.sha256(part.encode("utf-8")).hexdigest()[:HASH_CHARS]
    room = COMPONENT_BUDGET - len(_MARKER) - HASH_CHARS
    kept: list[str] = []
    for unit in units:
        room -= _utf8_len(unit)
        if room < 0:
            break
        kept.append(unit)
    return "".join(kept) + _MARKER + digest


def _require_valid_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"folder name is not valid Unicode: {text!r}") from exc


def encode_component(part: str) -> str:
    """Encode one folder-name component as a safe local file name.

    Raises ValueError for lone surrogates.  Results longer than
    COMPONENT_BUDGET bytes are truncated with a ``~`` + hash marker.
    """
    _require_valid_unicode(part)
    if not part:
        return EMPTY_TOKEN
    units = _encoded_units(part)
    encoded = "".join(units)
    if _utf8_len(encoded) <= COMPONENT_BUDGET:
        return encoded
    return _truncate(units, part)


def _unescape(body: str) -> str:
    """Undo %XX escapes; raises ValueError on a stray ``%`` or bad UTF-8."""
    pieces = _ESCAPE_RUN.split(body)
    out: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append(_decode_run(piece))
        elif "%" in piece:
            raise ValueError(f"malformed escape in local name: {body!r}")
        else:
            out.append(piece)
    return "".join(out)


def _decode_run(run: str) -> str:
    try:
        return bytes.fromhex(run.replace("%", "")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"escapes are not UTF-8: {run!r}") from exc


def decode_component(local: str) -> str:
    """Exact inverse of encode_component for names without ``~`` suffixes.

    Raises ValueError for truncated or uniquified names (``~``), which only
    the state database can map back, and for anything encode_component
    would not have produced.
    """
    if local == EMPTY_TOKEN:
        return ""
    if _MARKER in local:
        raise ValueError(f"local name has a truncation/uniqueness suffix: {local!r}")
    part = _unescape(local)
    if encode_component(part) != local:
        raise ValueError(f"not a canonical local name: {local!r}")
    return part


def is_truncated(local: str) -> bool:
    """True if *local* carries a ``~`` + hash truncation marker."""
    match = _SUFFIXED.fullmatch(local)
    return match is not None and match.group("hash") is not None


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _breaks_fs_rules(local: str) -> bool:
    """True if *local* is unusable or unsafe as a file name anywhere."""
    return (
        not local
        or _utf8_len(local) > MAX_COMPONENT_BYTES
        or _utf16_len(local) > MAX_COMPONENT_BYTES
        or any(c in _ALWAYS_ESCAPED and c not in "%~" for c in local)
        or local[0] in _EDGE_ESCAPED
        or local[-1] in _EDGE_ESCAPED
        or _is_windows_device(local)
        or _is_maildir_reserved(local)
        or _has_mbox_suffix(local)
    )


def _is_clean_body(body: str) -> bool:
    """Body before ``~`` suffixes: the empty token or well-formed escapes."""
    if body == EMPTY_TOKEN:
        return True
    try:
        _unescape(body)
    except ValueError:
        return False
    return body[0] not in _EDGE_ESCAPED


def is_safe_component(local: str) -> bool:
    """True if *local* is a name this module could have produced."""
    if _breaks_fs_rules(local):
        return False
    if _MARKER not in local:
        try:
            decode_component(local)
        except ValueError:
            return False
        return True
    match = _SUFFIXED.fullmatch(local)
    return match is not None and _is_clean_body(match.group("body"))


def is_safe_relative(path: PurePosixPath) -> bool:
    """Final guard: relative, within limits, every part a safe component.

    Meant for folder paths from local_path_for/unique_local_path, before a
    store adds its own suffixes (".mbox", Maildir's cur/new/tmp, …).
    """
    if not isinstance(path, PurePosixPath):
        return False
    parts = path.parts
    return (
        not path.is_absolute()
        and not path.drive
        and 0 < len(parts) <= MAX_DEPTH
        and _utf8_len(path.as_posix()) <= MAX_PATH_BYTES
        and all(is_safe_component(p) for p in parts)
    )


# --------------------------------------------------------------------------
# Whole paths
# --------------------------------------------------------------------------


def local_path_for(name: str, delimiter: str | None) -> PurePosixPath:
    """Relative local path of folder *name*; ValueError past the limits."""
    parts = split_folder(name, delimiter)
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"folder name has more than {MAX_DEPTH} levels")
    path = PurePosixPath(*(encode_component(p) for p in parts))
    if _utf8_len(path.as_posix()) > MAX_PATH_BYTES - UNIQUE_SUFFIX_ROOM:
        raise ValueError(f"local path would exceed {MAX_PATH_BYTES} bytes")
    return path


def folder_name_for(path: PurePosixPath, delimiter: str | None) -> str:
    """Inverse of local_path_for; ValueError for suffixed or foreign paths."""
    _check_delimiter(delimiter)
    if path.is_absolute() or not path.parts:
        raise ValueError(f"not a relative folder path: {path!r}")
    names = [decode_component(p) for p in path.parts]
    if delimiter is None:
        if len(names) != 1:
            raise ValueError(f"flat namespace but nested path: {path!r}")
        return names[0]
    if any(delimiter in n for n in names):
        raise ValueError(f"component contains the delimiter {delimiter!r}")
    return delimiter.join(names)


def path_key(path: PurePosixPath) -> str:
    """Case- and normalisation-insensitive key of a local path."""
    decomposed = unicodedata.normalize("NFD", path.as_posix())
    return unicodedata.normalize("NFC", decomposed.casefold())


def unique_local_path(wanted: PurePosixPath, taken: set[str]) -> PurePosixPath:
    """*wanted*, or it with ``~2``, ``~3``, … on the last part, whose
    path_key is not in *taken* (a set of path_key values; not modified).

    Uniqueness is per whole path: register parents before children and
    build child paths from the parent's returned path.
    """
    if not is_safe_relative(wanted):
        raise ValueError(f"not a safe local path: {wanted!r}")
    if path_key(wanted) not in taken:
        return wanted
    for counter in range(2, MAX_UNIQUE_COUNTER + 1):
        candidate = wanted.with_name(f"{wanted.name}{_MARKER}{counter}")
        if path_key(candidate) not in taken:
            return _checked(candidate)
    raise ValueError(f"no free name for {wanted!r}")


def _checked(path: PurePosixPath) -> PurePosixPath:
    if not is_safe_relative(path):
        raise ValueError(f"no safe unique name within limits: {path!r}")
    return path
