"""The key grammar: which destination keys S3 can store, on a corpus of real-world keys (pure, no network)."""

from __future__ import annotations

import pytest

from migrate.patterns import MAX_KEY_BYTES, validate_destination_key, validate_destination_prefix

# Keys S3 accepts (UTF-8, at most 1024 bytes) that real Supabase projects hold:
# Supabase Storage allows any of these in an object name (its key check accepts
# printable ASCII and Unicode letters; `//`, a trailing `/` and spaces included).
VALID_KEYS = [
    "a//b.txt",
    "a///b",
    "//lead",
    "/a/b",
    "/",
    "trailing/",
    "folder//",
    "a/./b",
    "a/../b",
    "..",
    ".",
    "a/.hidden/..x/x..",
    "a/ spaced /b",
    " leading and trailing ",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "日本語/ファイル.txt",
    "Zürich/Straße.pdf",
    "emoji/😀.png",
    "mixed/ÄÖÜ äöü ß/файл.txt",
    "rtl/שלום.txt",
    "a/evil\u202egnp.exe",  # a bidi override is printable Unicode to S3
    "del\x7fand\x85c1",  # DEL and C1 controls are XML 1.0 characters
    "a/100%+#?&=;:,$@!'()*",
    "!-_.*'()&$@=;:+,?",
    "{}^%`]['\"<>~#|\\",
    "a" * MAX_KEY_BYTES,
    "é" * 512,  # exactly 1024 bytes
    "a/" * 300 + "b",
]


@pytest.mark.parametrize("key", VALID_KEYS)
def test_every_key_s3_accepts_passes_unchanged(key):
    assert validate_destination_key(key) is None


def test_every_printable_ascii_character_passes_alone_and_inside_a_key():
    for code in range(0x20, 0x7F):
        assert validate_destination_key(chr(code)) is None, repr(chr(code))
        assert validate_destination_key(f"dir/{chr(code)}/x{chr(code)}y") is None, repr(chr(code))


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "destination key is empty"),
        ("a" * 1025, "destination key is 1025 bytes of UTF-8; S3 allows at most 1024"),
        ("é" * 513, "destination key is 1026 bytes of UTF-8; S3 allows at most 1024"),
        ("😀" * 257, "destination key is 1028 bytes of UTF-8; S3 allows at most 1024"),
        ("a/\x00b", "destination key contains U+0000, which S3 cannot return in an XML listing"),
        ("a/\x01", "destination key contains U+0001, which S3 cannot return in an XML listing"),
        ("\x08", "destination key contains U+0008, which S3 cannot return in an XML listing"),
        ("a\x0bb", "destination key contains U+000B, which S3 cannot return in an XML listing"),
        ("a\x0cb", "destination key contains U+000C, which S3 cannot return in an XML listing"),
        ("a/\x1f", "destination key contains U+001F, which S3 cannot return in an XML listing"),
        ("a\ufffe", "destination key contains U+FFFE, which S3 cannot return in an XML listing"),
        ("a\uffff", "destination key contains U+FFFF, which S3 cannot return in an XML listing"),
        ("a/\ud800", "destination key is not valid Unicode (it contains a lone surrogate)"),
        ("x" * 300 + "/\udfff", "destination key is not valid Unicode (it contains a lone surrogate)"),
    ],
)
def test_keys_s3_cannot_store_or_list_are_refused_with_the_reason(key, reason):
    assert validate_destination_key(key) == reason


def test_exactly_the_characters_outside_xml_1_0_are_refused():
    # XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
    refused = [code for code in range(0x10000) if validate_destination_key(f"k{chr(code)}") is not None]
    expected = [c for c in range(0x20) if c not in (0x9, 0xA, 0xD)] + list(range(0xD800, 0xE000)) + [0xFFFE, 0xFFFF]
    assert refused == expected
    assert validate_destination_key("k\U0010ffff") is None


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("migrated/", None),
        ("a b/ü/", None),
        ("/migrated/", "prefix starts with '/' (an empty first segment)"),
        ("a//b/", "prefix contains '//' (an empty segment)"),
        ("a/../b/", "prefix has a '..' segment; clients resolve it, so the object would be unreachable"),
        ("./", "prefix has a '.' segment; clients resolve it, so the object would be unreachable"),
        ("a\tb/", "prefix contains control character U+0009"),
        ("\x00/", "prefix contains U+0000, which S3 cannot return in an XML listing"),
    ],
)
def test_a_hand_written_destination_prefix_is_held_to_a_stricter_rule(prefix, reason):
    assert validate_destination_prefix(prefix) == reason


def test_every_key_supabase_storage_accepts_is_a_valid_destination_key():
    # The bundled server's is_valid_key follows upstream's src/storage/limits.ts isValidKey (S3-safe ASCII, as the
    # recorded upstream server answers: ../shared/supabase-upstream). Whatever a Supabase project can hold, S3 can
    # store under the same key (up to 1024 bytes); S3 accepts more than Supabase does.
    from migrate.stack.supabase_server.validation import is_valid_key

    characters = [chr(code) for code in range(0x10000)] + [chr(code) for code in range(0x10000, 0x110000, 0x101)]
    accepted = 0
    for character in characters:
        key = f"dir/{character}/name"
        if is_valid_key(key):
            accepted += 1
            assert validate_destination_key(key) is None, f"U+{ord(character):04X}"
    assert accepted == 63 + len("/!-.*'() &$@=;:+,?")  # \w (ASCII letters, digits, _), "/" and the punctuation
