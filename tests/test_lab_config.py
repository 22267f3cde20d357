"""[lab] in bench.toml (servers, tags, pinned binaries, thresholds) and `--devices` selectors."""
import hashlib

import pytest

from harness.benchmark.binaries import binary_for_abi
from harness.config import LabBinary, LabServer, load_config
from harness.targets.adb.discovery import known_servers
from harness.targets.selectors import (DeviceFacts, SelectorTerm, normalize_model, parse_selector,
                                       resolve_selector)
from harness.targets.adb.discovery import configured_servers
from harness.targets.adb.session import AdbServer
from harness.errors import UserError

LAB_TOML = """
[run]
devices = "tag:big"

[lab]
min_battery_pct = 30
max_temp_c = 42.5
max_thermal_status = 2
cooldown_deadline_s = 600

[lab.servers]
rack-a = "10.0.0.5:5037"
local = "127.0.0.1:5038"

[lab.tags]
"R58M123" = ["big", "pixel"]
"127.0.0.1:5555" = ["virtual"]

[lab.binaries.arm64-v8a]
path = "/opt/bench/benchmark_model"
sha256 = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
"""


def _write(tmp_path, text):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_lab_section_is_parsed_into_config_lab(tmp_path):
    config = load_config(_write(tmp_path, LAB_TOML))
    lab = config.lab
    assert lab.servers == [LabServer("rack-a", "10.0.0.5", 5037), LabServer("local", "127.0.0.1", 5038)]
    assert configured_servers(lab) == [AdbServer("10.0.0.5", 5037, "rack-a"), AdbServer("127.0.0.1", 5038, "local")]
    assert lab.tags_of("R58M123") == ["big", "pixel"] and lab.tags_of("nope") == []
    assert lab.binaries == {"arm64-v8a": LabBinary("/opt/bench/benchmark_model", "abcdef0123456789" * 4)}
    assert lab.pinned_sha256() == {"arm64-v8a": "abcdef0123456789" * 4}
    assert lab.hygiene == {"min_battery_pct": 30, "max_temp_c": 42.5, "max_thermal_status": 2,
                           "cooldown_deadline_s": 600.0}
    # The pinned path is where every caller of config.binaries looks for the ABI's binary.
    assert config.binaries == {"arm64-v8a": "/opt/bench/benchmark_model"}
    assert config.devices == "tag:big"


def test_no_lab_section_means_an_empty_lab(tmp_path):
    lab = load_config(_write(tmp_path, "[run]\nseed = 1\n")).lab
    assert (lab.servers, lab.tags, lab.binaries, lab.hygiene) == ([], {}, {}, {})


@pytest.mark.parametrize("text, words", [
    ('[lab.servers]\na = "10.0.0.5"\n', "host:port"),
    ('[lab.servers]\na = "10.0.0.5:99999"\n', "99999"),
    ('[lab.servers]\na = 5037\n', r"\[lab.servers\] a"),
    ('[lab.servers]\na = "h:1"\nb = "h:1"\n', "same address"),
    ('[lab.tags]\nX = "big"\n', "list of tag names"),
    ('[lab.tags]\nX = ["a,b"]\n', "commas"),
    ('[lab.binaries.mips]\npath = "x"\n', "mips"),
    ('[lab.binaries.x86]\nsha256 = "' + "0" * 64 + '"\n', "path"),
    ('[lab.binaries.x86]\npath = "x"\nsha256 = "xyz"\n', "64 hex"),
    ('[lab.binaries.x86]\npath = "x"\nmd5 = "1"\n', "md5"),
    ("[lab]\nmin_battery = 20\n", "min_battery"),
    ('[lab]\nmax_temp_c = "hot"\n', "max_temp_c"),
    ("[lab]\nmax_thermal_status = 1.5\n", "max_thermal_status"),
    ('[binaries]\nx86 = "a"\n[lab.binaries.x86]\npath = "b"\n', "given twice"),
    ("[run]\nlab = 1\n", r"\[run\] lab"),
])
def test_bad_lab_config_is_a_user_error_naming_the_input(tmp_path, text, words):
    with pytest.raises(UserError, match=words):
        load_config(_write(tmp_path, text))


def test_a_binary_whose_hash_differs_is_refused_naming_both_hashes(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF the pinned build")
    good = hashlib.sha256(binary.read_bytes()).hexdigest()
    config = load_config(_write(tmp_path, f'[lab.binaries.arm64-v8a]\npath = "{binary}"\n'
                                          f'sha256 = "{good}"\n'))
    pinned = config.lab.pinned_sha256()
    assert binary_for_abi("arm64-v8a", config.binaries, pinned) == binary
    binary.write_bytes(b"\x7fELF someone rebuilt it")  # same path, other content
    bad = hashlib.sha256(binary.read_bytes()).hexdigest()
    with pytest.raises(UserError) as info:
        binary_for_abi("arm64-v8a", config.binaries, pinned)
    assert good in str(info.value) and bad in str(info.value)
    # An ABI nobody pinned is not checked.
    assert binary_for_abi("x86_64", {}, pinned).name == "benchmark_model"


def test_known_servers_lists_configured_ones_once_with_their_names(tmp_path):
    lab = load_config(_write(tmp_path, '[lab.servers]\nrack-a = "10.0.0.5:5037"\n'
                                       'rack-b = "10.0.0.6:5037"\n')).lab
    servers = known_servers(lab)
    assert servers[:2] == [AdbServer("10.0.0.5", 5037, "rack-a"), AdbServer("10.0.0.6", 5037, "rack-b")]
    assert known_servers([AdbServer("h", 1, "x"), AdbServer("h", 1, "y")])[0].name == "x"
    only_default = [s for s in known_servers([]) if s.name != "virtual-lab"]
    assert only_default == [AdbServer()]


# -- selectors ----------------------------------------------------------------------------------
def test_parse_selector_terms():
    assert parse_selector("all") == [SelectorTerm("all", "all")]
    assert parse_selector(" R58M , tag:big,model:Pixel 7, abi:arm64-v8a,R58M,server:rack-a") == [
        SelectorTerm("serial", "R58M"), SelectorTerm("tag", "big"), SelectorTerm("model", "Pixel 7"),
        SelectorTerm("abi", "arm64-v8a"), SelectorTerm("server", "rack-a")]
    # A serial with a colon is a host:port device, not a selector kind.
    assert parse_selector("127.0.0.1:5555") == [SelectorTerm("serial", "127.0.0.1:5555")]
    for bad, words in [("", "empty"), (" , ", "no selector"), ("tags:big", "unknown selector"),
                       ("tag:", "needs a name")]:
        with pytest.raises(UserError, match=words):
            parse_selector(bad)


def test_model_names_compare_case_and_underscore_insensitively():
    assert normalize_model("Pixel_7  Pro") == normalize_model("pixel 7 pro") == "pixel 7 pro"


LAB = [
    DeviceFacts("R58M", "rack-a", "10.0.0.5:5037", "device", "Pixel 7 Pro", "arm64-v8a", ("big", "pixel")),
    DeviceFacts("ZY22", "rack-a", "10.0.0.5:5037", "device", "moto g", "armeabi-v7a", ("small",)),
    DeviceFacts("127.0.0.1:5555", "virtual-lab", "127.0.0.1:40001", "device",
                "bench Virtual x86_64 host-CPU", "x86_64", ()),
    DeviceFacts("OFF1", "rack-b", "10.0.0.6:5037", "offline"),
]


def _serials(selector):
    chosen, missing = resolve_selector(parse_selector(selector), LAB)
    return [d.serial for d in chosen], missing


def test_selectors_match_and_combine_as_a_union():
    assert _serials("all") == ([d.serial for d in LAB], [])
    assert _serials("tag:big") == (["R58M"], [])
    assert _serials("model:pixel_7_PRO") == (["R58M"], [])
    assert _serials("abi:X86_64") == (["127.0.0.1:5555"], [])
    assert _serials("server:rack-a") == (["R58M", "ZY22"], [])
    assert _serials("abi:armeabi-v7a,tag:pixel,R58M") == (["ZY22", "R58M"], [])
    assert _serials("OFF1,GHOST") == (["OFF1"], ["GHOST"])  # unknown serial: recorded as failed


@pytest.mark.parametrize("selector", ["tag:huge", "model:Pixel 8", "abi:mips", "server:rack-z",
                                      "R58M,tag:huge"])
def test_a_property_selector_matching_nothing_lists_what_exists(selector):
    with pytest.raises(UserError) as info:
        _serials(selector)
    message = str(info.value)
    assert "matches no device" in message
    for expected in ("R58M (server rack-a, device, model Pixel 7 Pro, abi arm64-v8a, tags big,pixel)",
                     "ZY22", "127.0.0.1:5555 (server virtual-lab", "OFF1 (server rack-b, offline"):
        assert expected in message
