"""Tests for mailbackup.store.naming (folder name -> local path mapping)."""

from __future__ import annotations

import hashlib
import posixpath
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from mailbackup.store.naming import (
    COMPONENT_BUDGET,
    EMPTY_TOKEN,
    MAX_DEPTH,
    MAX_PATH_BYTES,
    UNIQUE_SUFFIX_ROOM,
    decode_component,
    encode_component,
    folder_name_for,
    is_safe_component,
    is_safe_relative,
    is_truncated,
    local_path_for,
    path_key,
    split_folder,
    unique_local_path,
)

# Independent restatement of the rules, so the tests do not trust the module.
WINDOWS_FORBIDDEN = set('\\/:*?"<>|') | {chr(c) for c in range(0x20)} | {"\x7f"}
WINDOWS_DEVICES = (
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in "123456789¹²³"}
    | {f"LPT{n}" for n in "123456789¹²³"}
)
MAILDIR_DIRS = {"cur", "new", "tmp"}

DELIMITERS = st.sampled_from(["/", ".", None])
TRICKY = [
    "",
    ".",
    "..",
    " ",
    "/",
    "\\",
    ":",
    "%",
    "%41",
    "%2",
    "~",
    "~2",
    "~0123456789",
    "CON",
    "con",
    "aux.txt",
    "Nul .x",
    "COM1",
    "lpt9.log",
    "COM¹",
    "cur",
    "NEW",
    "Tmp",
    ".mbox",
    "A.mbox",
    "a.MBOX",
    "x.",
    "x ",
    " x",
    "\x00",
    "\x1f",
    "\x7f",
    "กล่องขาเข้า",
    "สำคัญ",
    "Café",
    "Cafe\u0301",
    "ß",
    "SS",
    "Sent",
    "sent",
    "\ud7ff",
]
TRICKY_CHARS = list('/\\:*?"<>|%~. \x00\x1f\x7f') + list("กขคำ่้ะAaé") + ["\u0301"]
NAMES = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(TRICKY_CHARS)),
    st.text(
        alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(TRICKY_CHARS))
    ),
    st.lists(st.sampled_from(TRICKY), max_size=6).map("/".join),
    st.lists(st.sampled_from(TRICKY), max_size=6).map(".".join),
    st.lists(st.sampled_from(TRICKY), max_size=3).map("".join),
)
LONG_NAMES = st.text(alphabet=st.sampled_from(TRICKY_CHARS), min_size=60, max_size=400)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def within_limits(name: str, delimiter: str | None) -> bool:
    parts = split_folder(name, delimiter)
    if len(parts) > MAX_DEPTH:
        return False
    joined = "/".join(encode_component(p) for p in parts)
    return utf8_len(joined) <= MAX_PATH_BYTES - UNIQUE_SUFFIX_ROOM


def mapped(name: str, delimiter: str | None) -> PurePosixPath:
    """local_path_for, asserting it raises exactly when limits are exceeded."""
    if within_limits(name, delimiter):
        return local_path_for(name, delimiter)
    with pytest.raises(ValueError):
        local_path_for(name, delimiter)
    assume(False)
    raise AssertionError("unreachable")


def assert_component_safe(local: str) -> None:
    assert local not in ("", ".", "..")
    assert not set(local) & WINDOWS_FORBIDDEN
    assert not local.startswith((".", " "))
    assert not local.endswith((".", " "))
    assert local.split(".")[0].rstrip(" ").upper() not in WINDOWS_DEVICES
    assert local.casefold() not in MAILDIR_DIRS
    assert not local.casefold().endswith(".mbox")
    assert utf8_len(local) <= COMPONENT_BUDGET + UNIQUE_SUFFIX_ROOM
    assert len(local.encode("utf-16-le")) // 2 <= 255


def assert_path_safe(path: PurePosixPath) -> None:
    assert is_safe_relative(path)
    assert not path.is_absolute()
    win = PureWindowsPath(path.as_posix())
    assert not win.drive and not win.root and win.parts == path.parts
    inside = posixpath.normpath(posixpath.join("/archive", path.as_posix()))
    assert inside.startswith("/archive/")
    for local in path.parts:
        assert_component_safe(local)


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@settings(max_examples=500)
@given(NAMES, DELIMITERS)
@example("../../etc/passwd", "/")
@example("a//b/", "/")
@example("/" * MAX_DEPTH, "/")
def test_mapped_path_is_safe(name: str, delimiter: str | None) -> None:
    path = mapped(name, delimiter)
    assert_path_safe(path)
    assert len(path.parts) == len(split_folder(name, delimiter))
    for local in path.parts:
        assert utf8_len(local) <= COMPONENT_BUDGET


@settings(max_examples=500)
@given(NAMES, DELIMITERS)
def test_round_trip_when_not_truncated(name: str, delimiter: str | None) -> None:
    path = mapped(name, delimiter)
    assume(not any(is_truncated(p) for p in path.parts))
    assert folder_name_for(path, delimiter) == name


@settings(max_examples=300)
@given(st.one_of(st.text(), LONG_NAMES))
def test_component_round_trip_or_truncated(part: str) -> None:
    local = encode_component(part)
    assert is_safe_component(local)
    if is_truncated(local):
        digest = hashlib.sha256(part.encode("utf-8")).hexdigest()[:10]
        assert local.endswith("~" + digest)
        with pytest.raises(ValueError):
            decode_component(local)
    else:
        assert decode_component(local) == part


@settings(max_examples=500)
@given(NAMES, NAMES, DELIMITERS)
@example("Sent", "sent", "/")
@example("", "%", None)
@example("a.mbox", "a%2Embox", "/")
@example("x~2", "x", "/")
def test_injective_over_non_truncated(a: str, b: str, delimiter: str | None) -> None:
    assume(a != b)
    pa, pb = mapped(a, delimiter), mapped(b, delimiter)
    assume(not any(is_truncated(p) for p in pa.parts + pb.parts))
    assert pa != pb


@settings(max_examples=300)
@given(st.text())
def test_decode_accepts_only_canonical(local: str) -> None:
    try:
        part = decode_component(local)
    except ValueError:
        return
    assert encode_component(part) == local


@settings(max_examples=300)
@given(st.text())
def test_is_safe_relative_never_lets_unsafe_through(text: str) -> None:
    path = PurePosixPath(text)
    if is_safe_relative(path):
        assert_path_safe(path)


@settings(max_examples=300)
@given(NAMES, DELIMITERS, st.lists(NAMES, max_size=8), st.booleans())
def test_unique_local_path_avoids_taken(
    name: str, delimiter: str | None, others: list[str], clash: bool
) -> None:
    wanted = mapped(name, delimiter)
    taken = {
        path_key(local_path_for(o, delimiter))
        for o in others
        if within_limits(o, delimiter)
    }
    if clash:
        taken.add(path_key(wanted))
    got = unique_local_path(wanted, taken)
    assert path_key(got) not in taken
    assert got.parent == wanted.parent
    assert_path_safe(got)
    if path_key(wanted) not in taken:
        assert got == wanted
    assert is_truncated(got.name) == is_truncated(wanted.name)


# --------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------


def test_thai_path_stays_readable() -> None:
    path = local_path_for("กล่องขาเข้า/สำคัญ", "/")
    assert path.parts == ("กล่องขาเข้า", "สำคัญ")
    assert folder_name_for(path, "/") == "กล่องขาเข้า/สำคัญ"


def test_dot_delimiter() -> None:
    assert split_folder("INBOX.Sent", ".") == ("INBOX", "Sent")
    assert local_path_for("INBOX.Sent", ".").parts == ("INBOX", "Sent")
    assert local_path_for("INBOX.Sent", "/").parts == ("INBOX.Sent",)
    assert local_path_for("INBOX/Sent", None).parts == ("INBOX%2FSent",)


def test_empty_components_survive() -> None:
    assert split_folder("a//b", "/") == ("a", "", "b")
    path = local_path_for("/a//b/", "/")
    assert path.parts == (EMPTY_TOKEN, "a", EMPTY_TOKEN, "b", EMPTY_TOKEN)
    assert folder_name_for(path, "/") == "/a//b/"
    assert local_path_for("", None).parts == (EMPTY_TOKEN,)


def test_traversal_stays_inside() -> None:
    path = local_path_for("../../etc/passwd", "/")
    assert path.parts == ("%2E%2E", "%2E%2E", "etc", "passwd")
    assert_path_safe(path)
    assert folder_name_for(path, "/") == "../../etc/passwd"


@pytest.mark.parametrize(
    ("part", "local"),
    [
        ("CON", "%43ON"),
        ("aux.txt", "%61ux.txt"),
        ("COM¹", "%43OM¹"),
        ("cur", "%63ur"),
        ("NEW", "%4EEW"),
        ("a:b", "a%3Ab"),
        (" x ", "%20x%20"),
        ("x.", "x%2E"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        (".hidden", "%2Ehidden"),
        ("%41", "%2541"),
        ("a~2", "a%7E2"),
        ("A.mbox", "A%2Embox"),
        ("a\x00b", "a%00b"),
        ("Sent Items", "Sent Items"),
        ("", EMPTY_TOKEN),
    ],
)
def test_examples_round_trip(part: str, local: str) -> None:
    assert encode_component(part) == local
    assert decode_component(local) == part
    assert is_safe_component(local)


def test_long_thai_names_truncate_uniquely() -> None:
    prefix = "ก" * 900
    a, b = prefix + "ข" * 100, prefix + "ค" * 100
    la, lb = encode_component(a), encode_component(b)
    assert is_truncated(la) and is_truncated(lb)
    assert la != lb
    assert la.startswith("ก" * 60)
    assert utf8_len(la) <= COMPONENT_BUDGET
    assert la.endswith("~" + hashlib.sha256(a.encode()).hexdigest()[:10])
    assert local_path_for(a, "/") != local_path_for(b, "/")


def test_truncation_never_splits_an_escape() -> None:
    local = encode_component("\x01" * 100)
    body = local.split("~")[0]
    assert body == "%01" * (len(body) // 3)
    assert is_safe_component(local)


def test_case_and_normalisation_clash_get_suffix() -> None:
    sent = local_path_for("Sent", "/")
    taken = {path_key(sent)}
    assert unique_local_path(local_path_for("SENT", "/"), taken).name == "SENT~2"
    nfc = local_path_for(unicodedata.normalize("NFC", "Café"), "/")
    nfd = local_path_for(unicodedata.normalize("NFD", "Café"), "/")
    assert nfc != nfd and path_key(nfc) == path_key(nfd)
    taken = {path_key(nfc), path_key(nfd.with_name(nfd.name + "~2"))}
    assert unique_local_path(nfd, taken).name == nfd.name + "~3"


def test_suffixed_names_are_not_decodable() -> None:
    for local in ("Sent~2", "x" * 20 + "~0123456789"):
        assert is_safe_component(local)
        with pytest.raises(ValueError):
            decode_component(local)
    assert is_truncated("x~0123456789~2")
    assert not is_truncated("x~2")


@pytest.mark.parametrize(
    "text",
    [
        "/etc",
        "..",
        "a/../b",
        "C:/x",
        "c:",
        "a\\b",
        "con",
        "cur",
        "x.mbox",
        ".hidden",
        "x.",
        " x",
        "%41",
        "%2e",
        "%~",
        "~2",
        "a~b",
        "a~0",
        "%C3",
        "x" * 210,
        "/".join("a" * 101),
    ],
)
def test_is_safe_relative_rejects(text: str) -> None:
    assert not is_safe_relative(PurePosixPath(text))


def test_is_safe_relative_rejects_empty_path() -> None:
    assert not is_safe_relative(PurePosixPath(""))
    assert not is_safe_relative(PurePosixPath("."))


def test_limits() -> None:
    with pytest.raises(ValueError):
        local_path_for("/".join(["a"] * (MAX_DEPTH + 1)), "/")
    local_path_for("/".join(["a"] * MAX_DEPTH), "/")
    with pytest.raises(ValueError):
        local_path_for("/".join(["ก" * 100] * 20), "/")


def test_bad_input_rejected() -> None:
    with pytest.raises(ValueError):
        encode_component("\ud800")
    with pytest.raises(ValueError):
        split_folder("a", "//")
    with pytest.raises(ValueError):
        folder_name_for(PurePosixPath("a/b"), None)
    with pytest.raises(ValueError):
        folder_name_for(PurePosixPath("a.b"), ".")
    with pytest.raises(ValueError):
        folder_name_for(PurePosixPath("/a"), "/")
    with pytest.raises(ValueError):
        unique_local_path(PurePosixPath("../x"), set())
