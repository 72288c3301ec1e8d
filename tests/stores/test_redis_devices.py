"""RedisStore's packed devices (satchel.stores.redis.devices) without a server: every device
comes back exactly as it went in, packed ones are much shorter, anything that would not
come back exactly stays text, and bytes that are not a device are refused loudly."""

from __future__ import annotations

import hashlib
import random

import pytest

from satchel.store import BOOKKEEPING, DEVICE_MAX, Record
from satchel.stores.redis.devices import DICTIONARY, PACKED, pack, unpack
from satchel.stores.redis.record import decode, encode
from satchel.users import describe_device

NOW = 1_800_000_000.0
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
          " Chrome/142.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
                 " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
AGENTS = [CHROME, SAFARI_IPHONE, FIREFOX, "Werkzeug/3.1.9", "curl/8.5.0", "", "x",
          "python-requests/2.32.3", "Mozilla/5.0 (compatible; Googlebot/2.1)",
          "Ünïcödé agent ☃ 🙂", "a (b) (c)", "ends with a paren)", "(", "x" * 300]
ADDRESSES = [None, "127.0.0.1", "203.0.113.54", "0.0.0.0", "255.255.255.255", "::1",
             "2001:db8::8a2e:370:7334", "::", "fe80::1%eth0", "::ffff:192.0.2.1",
             "2001:0db8::1", "01.2.3.4", "1.2.3", "not an address", "1.2.3.4 "]


def test_the_dictionary_is_frozen() -> None:
    # Part of the stored format: a changed byte garbles every packed device already stored.
    assert hashlib.sha256(DICTIONARY).hexdigest() == (
        "09da05779b626c4731c2ad0963d709535fba4edefab3c4656ff1b71de10da114")


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("address", ADDRESSES)
def test_every_device_comes_back_exactly(agent: str, address: str | None) -> None:
    for device in (describe_device(agent, address), f"{agent} ({address})", f"{agent}({address})",
                   f" ({address})", f"({address}) {agent}"):
        if device is None:
            continue
        device = device[:DEVICE_MAX]
        data = pack(device)
        assert unpack(data) == device
        assert len(data) <= len(device.encode())  # never longer than the text
        assert (data[:1] >= bytes((PACKED,))) == (data != device.encode())


def test_random_devices_come_back_exactly() -> None:
    rng = random.Random(30)
    alphabet = "abcXYZ019 ()/;.:_-%[]ü☃\x01"
    for _ in range(5000):
        agent = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        v4 = ".".join(str(rng.randrange(256)) for _ in range(4))
        v6 = ":".join(f"{rng.randrange(65536):x}" for _ in range(8))
        device = rng.choice([agent, f"{agent} ({v4})", f"{agent} ({v6})", f"({v4})"])
        assert unpack(pack(device)) == device


@pytest.mark.parametrize(("device", "most"), [
    (f"{CHROME} (203.0.113.54)", 16),         # 126 bytes as text
    (f"{SAFARI_IPHONE} (198.51.100.7)", 24),  # 146
    (f"{FIREFOX} (2001:db8::1)", 30),          # 85
    ("Werkzeug/3.1.9 (127.0.0.1)", 10),       # 26: the test client's
])
def test_common_devices_pack_small(device: str, most: int) -> None:
    assert len(pack(device)) <= most


@pytest.mark.parametrize("device", [
    "x (fe80::1%eth0)",      # a zone: not in the packed address
    "x (01.2.3.4)",          # not the canonical form
    "x (2001:0db8::1)",
    " (1.2.3.4)",            # would come back without the space
    "x(1.2.3.4)",
    "phone", "",
    BOOKKEEPING,             # the engine's marker stays as it is
])
def test_what_would_not_come_back_exactly_or_gains_nothing_stays_text(device: str) -> None:
    assert pack(device) == device.encode()


@pytest.mark.parametrize("data", [
    bytes((PACKED | 3,)) + b"\x01\x02",          # no such address kind
    bytes((PACKED | 1,)) + b"\x01\x02",          # an IPv4 address cut short
    bytes((PACKED | 2,)) + b"\x00" * 15,         # an IPv6 address cut short
    bytes((PACKED | 4,)) + b"\xff\xff\xff",      # does not inflate
    pack(f"{CHROME} (1.2.3.4)")[:-2],            # inflates, but not to its end
    pack(f"{CHROME} (1.2.3.4)") + b"\x00",       # bytes after the end
    bytes((PACKED,)) + b"\xff",                  # an agent that is not UTF-8
    b"caf\xc3",                                  # text that is not UTF-8
])
def test_bytes_that_are_not_a_device_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(data)


def test_a_record_whose_device_does_not_unpack_is_malformed_not_a_guess() -> None:
    record = Record({"a": b"1"}, NOW, NOW, NOW + 60, device="d")
    good = encode(record, None, pack(f"{CHROME} (1.2.3.4)"))
    assert decode(good, NOW).device == f"{CHROME} (1.2.3.4)"  # type: ignore[union-attr]
    bad = encode(record, None, bytes((PACKED | 4,)) + b"\xff\xff")
    assert decode(bad, NOW) == "not a session record (ValueError)"
