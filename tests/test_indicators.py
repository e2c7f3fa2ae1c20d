"""Indicators of compromise are validated, normalised and refused with a message saying what to fix.

Recipients match indicators from several States against each other, so two spellings of the
same indicator must come out equal, and a bad one must be refused before it is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from domain.errors import InvalidIndicator, ValidationError
from domain.indicators import (
    MAX_INDICATORS,
    Indicator,
    IndicatorKind,
    parse_indicator,
    parse_indicators,
)

SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def rejection(kind: str, value: Any) -> str:
    """Parse what must be refused and return the message, for assertions on its wording."""
    with pytest.raises(InvalidIndicator) as caught:
        parse_indicator(kind, value)
    return str(caught.value)


# --- each kind accepted and normalised ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "given", "canonical"),
    [
        ("ipv4", "192.0.2.1", "192.0.2.1"),
        ("ipv4", "  192.0.2.1\n", "192.0.2.1"),
        ("ipv6", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("ipv6", "::FFFF:192.0.2.1", "::ffff:c000:201"),
        ("ipv4-range", "192.0.2.0/24", "192.0.2.0/24"),
        ("ipv4-range", "192.0.2.0/255.255.255.0", "192.0.2.0/24"),
        ("ipv6-range", "2001:0DB8:0000::/32", "2001:db8::/32"),
        ("domain", "Evil.Example.COM", "evil.example.com"),
        ("domain", "example.com.", "example.com"),
        ("domain", "xn--bcher-kva.de", "xn--bcher-kva.de"),
        (
            "url",
            "HTTPS://Evil.Example.com/Login?User=Bob#Top",
            "https://evil.example.com/Login?User=Bob#Top",
        ),
        ("url", "ftp://files.example.org/pub/x.bin", "ftp://files.example.org/pub/x.bin"),
        ("url", "ftps://files.example.org/x", "ftps://files.example.org/x"),
        ("url", "http://192.0.2.1:8080/c2", "http://192.0.2.1:8080/c2"),
        ("url", "http://[2001:DB8::1]:443/x", "http://[2001:db8::1]:443/x"),
        ("url", "http://example.com", "http://example.com/"),
        ("url", "http://example.com?q=1", "http://example.com/?q=1"),
        ("md5", MD5.upper(), MD5),
        ("sha1", SHA1.upper(), SHA1),
        ("sha256", SHA256.upper(), SHA256),
        ("malware", "  WannaCry  ", "WannaCry"),
        ("malware", "Trojan.Win32/Emotet!ml", "Trojan.Win32/Emotet!ml"),
    ],
)
def test_each_kind_is_accepted_and_normalised(kind: str, given: str, canonical: str) -> None:
    indicator = parse_indicator(kind, given)
    assert indicator == Indicator(IndicatorKind(kind), canonical)
    assert indicator.value == canonical
    assert isinstance(indicator.kind, IndicatorKind)


def test_two_spellings_of_the_same_indicator_compare_and_hash_equal() -> None:
    a = parse_indicator("ipv6", "2001:DB8:0::1")
    b = parse_indicator("ipv6", "2001:db8::0:1")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


def test_kind_is_matched_case_insensitively() -> None:
    assert parse_indicator("SHA256", SHA256).kind is IndicatorKind.SHA256
    assert parse_indicator(" IPv4 ", "192.0.2.1").kind is IndicatorKind.IPV4


def test_kind_values_are_the_wire_spellings() -> None:
    assert [k.value for k in IndicatorKind] == [
        "ipv4",
        "ipv6",
        "ipv4-range",
        "ipv6-range",
        "domain",
        "url",
        "md5",
        "sha1",
        "sha256",
        "malware",
    ]


def test_malware_name_keeps_its_case_and_inner_spaces() -> None:
    assert parse_indicator("malware", "Cobalt Strike").value == "Cobalt Strike"


def test_malware_name_of_128_characters_is_accepted() -> None:
    assert parse_indicator("malware", "m" * 128).value == "m" * 128


def test_domain_of_253_characters_is_accepted() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    assert parse_indicator("domain", name).value == name


def test_domain_allows_hyphens_inside_labels_and_digits_before_the_tld() -> None:
    assert parse_indicator("domain", "my-site.123.example").value == "my-site.123.example"


# --- IDN domains ------------------------------------------------------------------------------


def test_unicode_domain_is_encoded_to_punycode() -> None:
    assert parse_indicator("domain", "bücher.de").value == "xn--bcher-kva.de"


def test_unicode_domain_and_its_punycode_are_the_same_indicator() -> None:
    assert parse_indicator("domain", "BÜCHER.de") == parse_indicator("domain", "xn--bcher-kva.de")


def test_ideographic_full_stops_separate_labels_of_an_idn() -> None:
    assert parse_indicator("domain", "例え。テスト").value == "xn--r8jz45g.xn--zckzah"


def test_unicode_host_of_a_url_is_encoded_to_punycode() -> None:
    indicator = parse_indicator("url", "https://Bücher.de/straße")
    assert indicator.value == "https://xn--bcher-kva.de/straße"


def test_invalid_punycode_label_is_rejected() -> None:
    message = rejection("domain", "xn--zz.com")
    assert "'xn--zz'" in message and "punycode" in message


def test_unicode_label_that_idna_cannot_encode_is_rejected_with_a_clear_message() -> None:
    message = rejection("domain", "ü" * 70 + ".com")
    assert message.startswith("invalid domain indicator ")
    assert "IDNA" in message


# --- defanged URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("hxxp://evil.example.com/payload.exe", "http://evil.example.com/payload.exe"),
        ("hxxps://evil.example.com/login", "https://evil.example.com/login"),
        ("HXXPS://EVIL.example.com/Login", "https://evil.example.com/Login"),
    ],
)
def test_defanged_hxxp_scheme_is_normalised_to_http(given: str, canonical: str) -> None:
    assert parse_indicator("url", given).value == canonical


def test_defanged_and_live_urls_are_the_same_indicator() -> None:
    assert parse_indicator("url", "hxxp://evil.example.com/x") == parse_indicator(
        "url", "http://evil.example.com/x"
    )


def test_url_path_and_query_are_kept_as_given() -> None:
    value = "http://example.com/A%20b/../C?x=1&Y=%2F;z#Frag"
    assert parse_indicator("url", value).value == value


def test_url_userinfo_is_kept_and_port_is_normalised() -> None:
    indicator = parse_indicator("url", "http://User:Pw@Example.com:080/x")
    assert indicator.value == "http://User:Pw@example.com:80/x"


def test_url_host_trailing_dot_is_dropped_like_a_domain() -> None:
    assert parse_indicator("url", "http://example.com./").value == "http://example.com/"


def test_bracket_defanged_domain_is_rejected_with_a_hint_to_refang() -> None:
    message = rejection("domain", "evil[.]example.com")
    assert "'[.]'" in message


# --- rejections: every message names the kind, quotes the value and says what is expected -------


REJECTIONS: list[tuple[str, str, str]] = [
    ("ipv4", "192.0.2.256", "not an IPv4 address"),
    ("ipv4", "192.0.2.01", "without leading zeros"),
    ("ipv4", "192.0.2", "not an IPv4 address"),
    ("ipv4", "2001:db8::1", "kind 'ipv6'"),
    ("ipv4", "192.0.2.0/24", "kind 'ipv4-range'"),
    ("ipv6", "2001:db8::g", "not an IPv6 address"),
    ("ipv6", "192.0.2.1", "kind 'ipv4'"),
    ("ipv6", "2001:db8::/32", "kind 'ipv6-range'"),
    ("ipv6", "fe80::1%eth0", "zone index"),
    ("ipv4-range", "192.0.2.1", "a single address is not a range"),
    ("ipv4-range", "192.0.2.0/33", "not a CIDR network"),
    ("ipv4-range", "2001:db8::/32", "kind 'ipv6-range'"),
    ("ipv6-range", "2001:db8::1", "a single address is not a range"),
    ("ipv6-range", "192.0.2.0/24", "kind 'ipv4-range'"),
    ("ipv6-range", "2001:db8::/129", "not a CIDR network"),
    ("ipv6-range", "fe80::%eth0/64", "zone index"),
    ("domain", "localhost", "single label"),
    ("domain", "example..com", "empty label"),
    ("domain", ".example.com", "empty label"),
    ("domain", "-evil.example.com", "starts or ends with '-'"),
    ("domain", "evil-.example.com", "starts or ends with '-'"),
    ("domain", "ev_il.example.com", "other than a-z, 0-9 and '-'"),
    ("domain", "evil example.com", "whitespace"),
    ("domain", "a" * 64 + ".com", "longer than 63"),
    ("domain", "example.123", "all digits"),
    ("domain", "192.0.2.1", "kind 'ipv4'"),
    ("domain", "http://example.com/", "other than a-z"),
    ("url", "example.com/path", "kind 'domain'"),
    ("url", "javascript:alert(1)", "scheme 'javascript' is not allowed"),
    ("url", "file:///etc/passwd", "scheme 'file' is not allowed"),
    ("url", "http:/example.com", "no host"),
    ("url", "http:///path", "no host"),
    ("url", "http://user@/path", "no host"),
    ("url", "http://exa mple.com/", "whitespace"),
    ("url", "http://example.com/a\nb", "control"),
    ("url", "http://2001:db8::1/", "brackets"),
    ("url", "http://[2001:db8::1/", "not closed"),
    ("url", "http://[192.0.2.1]/", "not an IPv6 address"),
    ("url", "http://[2001:db8::1]x/", "unexpected text"),
    ("url", "http://example.com:0/", "port"),
    ("url", "http://example.com:65536/", "port"),
    ("url", "http://example.com:http/", "port"),
    ("url", "http://ev_il.example.com/", "other than a-z"),
    ("url", "http://localhost/", "single label"),
    ("url", "http://" + "a" * 2050 + ".com/", "at most 2048"),
    ("md5", MD5[:-1], "31 characters"),
    ("md5", MD5[:-1] + "g", "other than hexadecimal"),
    ("sha1", SHA1 + "0", "41 characters"),
    ("sha1", MD5, "use kind 'md5'"),
    ("sha256", SHA1, "use kind 'sha1'"),
    ("sha256", "0x" + SHA256[2:], "other than hexadecimal"),
    ("malware", "m" * 129, "129 characters"),
    ("malware", "Emo\ttet", "control"),
    ("malware", "Emo\x00tet", "control"),
    ("malware", "Emo\u200btet", "non-printable"),
    ("malware", "   ", "empty"),
    ("ipv4", "", "empty"),
]


@pytest.mark.parametrize(("kind", "value", "reason"), REJECTIONS)
def test_bad_value_is_rejected_naming_kind_value_and_what_is_expected(
    kind: str, value: str, reason: str
) -> None:
    message = rejection(kind, value)
    assert message.startswith(f"invalid {kind} indicator ")
    shown = value.strip() or value
    quoted = shown if len(shown) <= 80 else shown[:77] + "..."
    assert repr(quoted) in message
    assert "expected" in message
    assert reason in message


def test_ipv4_range_with_host_bits_is_rejected_with_the_network_to_use() -> None:
    message = rejection("ipv4-range", "192.0.2.77/24")
    assert "host bits" in message
    assert "192.0.2.0/24" in message


def test_ipv6_range_with_host_bits_is_rejected_with_the_network_to_use() -> None:
    message = rejection("ipv6-range", "2001:db8::1/32")
    assert "host bits" in message
    assert "2001:db8::/32" in message


@pytest.mark.parametrize(
    ("kind", "value", "address"),
    [("ipv4-range", "192.0.2.1/32", "192.0.2.1"), ("ipv6-range", "2001:db8::1/128", "2001:db8::1")],
)
def test_range_of_a_single_address_is_rejected_pointing_to_the_address_kind(
    kind: str, value: str, address: str
) -> None:
    message = rejection(kind, value)
    assert "a single address is not a range" in message
    assert f"kind '{kind.removesuffix('-range')}' with value {address}" in message


def test_domain_longer_than_253_characters_is_rejected() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
    message = rejection("domain", name)
    assert "254 characters long, more than 253" in message


def test_long_offending_value_is_truncated_to_80_characters_in_the_message() -> None:
    value = "x" * 500
    message = rejection("md5", value)
    assert repr("x" * 77 + "...") in message
    assert "x" * 81 not in message


def test_control_characters_are_escaped_in_the_message() -> None:
    message = rejection("malware", "bad\nname")
    assert "\n" not in message
    assert "'bad\\nname'" in message


def test_unknown_kind_is_rejected_naming_the_allowed_kinds() -> None:
    message = rejection("ip", "192.0.2.1")
    assert "unknown indicator kind 'ip'" in message
    for kind in IndicatorKind:
        assert kind.value in message


@pytest.mark.parametrize("value", [None, 42, b"192.0.2.1", ["192.0.2.1"]])
def test_value_that_is_not_a_string_is_rejected(value: Any) -> None:
    message = rejection("ipv4", value)
    assert "must be a string" in message
    assert "expected" in message


def test_kind_that_is_not_a_string_is_rejected() -> None:
    message = rejection(4, "192.0.2.1")  # type: ignore[arg-type]
    assert "must be a string" in message


NASTY = [
    "",
    " ",
    "\x00",
    "\ud800",
    "xn--",
    "xn--.com",
    "[",
    "[::1",
    "http://[",
    "http://:",
    "http://@",
    "hxxp://",
    "::",
    "/",
    "/0",
    "%",
    "ü" * 300,
    "." * 300,
    "a." * 200,
    "http://" + "ü" * 100 + ".com",
    "1" * 100,
    "0" * 32 + "\u0660",
]


@pytest.mark.parametrize("kind", [k.value for k in IndicatorKind])
@pytest.mark.parametrize("value", NASTY)
def test_odd_input_never_escapes_as_a_raw_value_or_unicode_error(kind: str, value: str) -> None:
    try:
        indicator = parse_indicator(kind, value)
    except InvalidIndicator as exc:
        assert "expected" in str(exc)
    else:
        assert parse_indicator(kind, indicator.value) == indicator


def test_invalid_indicator_is_a_validation_error_and_a_value_error() -> None:
    with pytest.raises(ValidationError):
        parse_indicator("md5", "nope")
    with pytest.raises(ValueError):
        parse_indicator("md5", "nope")


# --- the Indicator value object ---------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip() -> None:
    indicator = parse_indicator("url", "hxxp://Evil.example.com/x")
    data = indicator.to_dict()
    assert data == {"kind": "url", "value": "http://evil.example.com/x"}
    assert type(data["kind"]) is str
    assert Indicator.from_dict(data) == indicator


def test_from_dict_validates_and_normalises() -> None:
    assert Indicator.from_dict({"kind": "md5", "value": MD5.upper()}).value == MD5
    with pytest.raises(InvalidIndicator, match="invalid md5 indicator"):
        Indicator.from_dict({"kind": "md5", "value": "abc"})


def test_from_dict_rejects_missing_and_unexpected_keys() -> None:
    with pytest.raises(InvalidIndicator, match="missing key 'value'"):
        Indicator.from_dict({"kind": "md5"})
    with pytest.raises(InvalidIndicator, match="unexpected key 'note'"):
        Indicator.from_dict({"kind": "md5", "value": MD5, "note": "x"})


def test_indicator_is_immutable() -> None:
    indicator = parse_indicator("ipv4", "192.0.2.1")
    with pytest.raises(AttributeError):
        indicator.value = "192.0.2.2"  # type: ignore[misc]


def test_direct_construction_accepts_a_canonical_value_and_coerces_the_kind() -> None:
    indicator = Indicator("ipv4", "192.0.2.1")  # type: ignore[arg-type]
    assert indicator.kind is IndicatorKind.IPV4
    assert indicator == parse_indicator("ipv4", "192.0.2.1")


def test_direct_construction_refuses_a_value_not_in_canonical_form() -> None:
    with pytest.raises(InvalidIndicator, match="not in canonical form; expected '2001:db8::1'"):
        Indicator(IndicatorKind.IPV6, "2001:DB8::1")


def test_direct_construction_refuses_an_invalid_value() -> None:
    with pytest.raises(InvalidIndicator, match="invalid ipv4 indicator"):
        Indicator(IndicatorKind.IPV4, "not an address")


# --- lists of indicators ----------------------------------------------------------------------


def test_list_is_parsed_in_order() -> None:
    parsed = parse_indicators(
        [
            {"kind": "domain", "value": "evil.example.com"},
            {"kind": "ipv4", "value": "192.0.2.1"},
            {"kind": "sha256", "value": SHA256},
        ]
    )
    kinds = [i.kind for i in parsed]
    assert kinds == [IndicatorKind.DOMAIN, IndicatorKind.IPV4, IndicatorKind.SHA256]
    assert isinstance(parsed, tuple)


def test_duplicates_are_removed_keeping_first_seen_order() -> None:
    parsed = parse_indicators(
        [
            {"kind": "ipv4", "value": "192.0.2.1"},
            {"kind": "domain", "value": "Evil.Example.com."},
            {"kind": "ipv4", "value": " 192.0.2.1 "},
            {"kind": "url", "value": "hxxp://evil.example.com/x"},
            {"kind": "domain", "value": "evil.example.com"},
            {"kind": "url", "value": "http://evil.example.com/x"},
        ]
    )
    assert [i.to_dict() for i in parsed] == [
        {"kind": "ipv4", "value": "192.0.2.1"},
        {"kind": "domain", "value": "evil.example.com"},
        {"kind": "url", "value": "http://evil.example.com/x"},
    ]


def test_same_value_under_different_kinds_is_not_a_duplicate() -> None:
    parsed = parse_indicators(
        [{"kind": "malware", "value": "example.com"}, {"kind": "domain", "value": "example.com"}]
    )
    assert len(parsed) == 2


def test_empty_list_gives_no_indicators() -> None:
    assert parse_indicators([]) == ()


def test_error_names_the_one_based_position_of_the_bad_item() -> None:
    items = [
        {"kind": "ipv4", "value": "192.0.2.1"},
        {"kind": "ipv4", "value": "192.0.2.2"},
        {"kind": "ipv4", "value": "192.0.2.300"},
    ]
    with pytest.raises(InvalidIndicator) as caught:
        parse_indicators(items)
    assert str(caught.value).startswith("indicator #3: invalid ipv4 indicator '192.0.2.300'")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"kind": "ipv4"}, "missing key 'value'"),
        ({"value": "192.0.2.1"}, "missing key 'kind'"),
        ({"kind": "ipv4", "value": "192.0.2.1", "comment": "x"}, "unexpected key 'comment'"),
        ({"type": "ipv4", "value": "192.0.2.1"}, "missing key 'kind' and unexpected key 'type'"),
        ({"kind": "ipv4", "value": 3232235777}, "value must be a string, got int"),
        ({"kind": ["ipv4"], "value": "192.0.2.1"}, "kind must be a string, got list"),
        ({"kind": "ipaddr", "value": "192.0.2.1"}, "unknown indicator kind 'ipaddr'"),
        ("192.0.2.1", "expected an object, got str"),
        (None, "expected an object, got NoneType"),
    ],
)
def test_malformed_item_is_rejected_with_its_position(item: Any, reason: str) -> None:
    with pytest.raises(InvalidIndicator) as caught:
        parse_indicators([{"kind": "md5", "value": MD5}, item])
    message = str(caught.value)
    assert message.startswith("indicator #2: ")
    assert reason in message
    assert "expected" in message


@pytest.mark.parametrize("items", [{"kind": "ipv4", "value": "192.0.2.1"}, "192.0.2.1", 5])
def test_something_other_than_a_list_is_rejected(items: Any) -> None:
    with pytest.raises(InvalidIndicator, match="expected a list"):
        parse_indicators(items)


def distinct_addresses(count: int) -> list[dict[str, str]]:
    """``count`` different IPv4 indicators, so de-duplication leaves them all."""
    return [{"kind": "ipv4", "value": f"10.0.{i // 256}.{i % 256}"} for i in range(count)]


def test_exactly_the_limit_is_accepted() -> None:
    items = distinct_addresses(MAX_INDICATORS)
    assert len(parse_indicators(items)) == MAX_INDICATORS


def test_more_than_the_limit_is_rejected() -> None:
    items = distinct_addresses(MAX_INDICATORS + 1)
    with pytest.raises(InvalidIndicator, match=f"at most {MAX_INDICATORS}"):
        parse_indicators(items)


def test_limit_counts_items_before_duplicates_are_removed() -> None:
    items = [{"kind": "ipv4", "value": "192.0.2.1"}] * (MAX_INDICATORS + 1)
    with pytest.raises(InvalidIndicator, match="too many indicators"):
        parse_indicators(items)


def test_limit_stops_reading_an_endless_stream() -> None:
    def endless() -> Iterator[dict[str, str]]:
        while True:
            yield {"kind": "malware", "value": "Emotet"}

    with pytest.raises(InvalidIndicator, match="too many indicators"):
        parse_indicators(endless())


def test_limit_is_one_thousand() -> None:
    assert MAX_INDICATORS == 1000
