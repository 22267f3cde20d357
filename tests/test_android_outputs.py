"""bench's reading of what real phones print (tests/data/android/, each file's source in its
SOURCES): `dumpsys thermalservice` of two Android 12+ phones, `dumpsys battery` of three, and
what the gates make of them. These are the phones' outputs, not the virtual device's."""
from pathlib import Path

import pytest

from harness.config import HygieneSettings
from harness.targets.hygiene import unfit_reasons
from harness.targets.telemetry import (SECTION_MARK, parse_charging, parse_dumpsys_battery,
                                       parse_hal_temperatures, parse_telemetry,
                                       parse_thermal_status)

DATA = Path(__file__).parent / "data" / "android"


def dump(phone: str, service: str) -> str:
    return (DATA / phone / "dumpsys" / f"{service}.txt").read_text()


def snapshot(battery: str = "", thermalservice: str = "", zones: str = ""):
    """parse_telemetry over the sections one telemetry round trip returns."""
    text = "\n".join(f"{SECTION_MARK}{name}\n{body}" for name, body in
                     (("battery", battery), ("thermalservice", thermalservice), ("zones", zones)))
    return parse_telemetry(text, at="now")


def test_every_file_is_named_in_sources():
    sources = (DATA / "SOURCES").read_text()
    for path in DATA.glob("*/dumpsys/*.txt"):
        assert f"{path.parent.parent.name}/dumpsys/{path.name}" in sources


def test_the_hal_temperatures_now_not_the_stale_cache():
    # This phone's cache still holds the CPUs at 79-89 °C; the HAL says 34-36 °C now.
    text = dump("unknown_sm8650_device", "thermalservice")
    temps = parse_hal_temperatures(text)
    assert len(temps) == 26
    cpu = {t.name: t.value for t in temps if t.kind == "cpu"}
    assert cpu["CPU1"] == 35.8 and max(cpu.values()) == 35.8
    assert parse_thermal_status(text) == 0


def test_types_that_are_not_degrees_celsius_are_never_temperatures():
    # socd is BCL_PERCENTAGE (53 %), vbat BCL_VOLTAGE, ibat BCL_CURRENT: Temperature.java's types
    # 6..8. Read as °C, 53.0 alone would trip a 45 °C gate.
    temps = {t.name: t for t in parse_hal_temperatures(dump("unknown_sm8650_device", "thermalservice"))}
    assert not temps["socd"].is_celsius and temps["socd"].kind == "bcl_percentage"
    assert not temps["vbat"].is_celsius and not temps["ibat"].is_celsius
    telemetry = snapshot(thermalservice=dump("unknown_sm8650_device", "thermalservice"))
    assert "bcl_percentage:socd" not in telemetry.hal_c
    assert telemetry.gate_temp_c == 31.2 and telemetry.gate_source == "HAL battery"
    assert telemetry.cpu_temp_c == 35.8
    assert unfit_reasons(telemetry, HygieneSettings()) == []


def test_skin_and_battery_are_gated_cpu_only_when_asked():
    telemetry = snapshot(battery=dump("google_pixel_c", "battery"),
                         thermalservice=dump("samsung_galaxy_a52_5g", "thermalservice"))
    assert telemetry.skin_temp_c == 24.7  # LRB, LRF, LRP: TYPE_SKIN
    assert telemetry.battery_temp_c == 27.5  # dumpsys battery's tenths of °C
    assert telemetry.gate_temp_c == 27.5 and telemetry.gate_source == "HAL skin + dumpsys battery"
    assert telemetry.cpu_temp_c == 25.6  # AP: TYPE_CPU
    assert unfit_reasons(telemetry, HygieneSettings(max_cpu_temp_c=25.0)) == [
        "CPU hot: 25.6 °C > 25.0 °C"]
    assert unfit_reasons(telemetry, HygieneSettings(max_temp_c=25.0))[0].startswith(
        "device hot: 27.5 °C > 25.0 °C (HAL skin + dumpsys battery)")


@pytest.mark.parametrize("phone, level, temp_c, charging", [
    ("google_pixel_c", 19, 27.5, True),           # AC powered, status 2
    ("samsung_unknown_model", 100, 30.9, True),   # USB powered, status 5 (full)
    ("xiaomi_redmi_note_14_4g", 80, 36.4, True),  # newer lines between the keys
])
def test_battery_dumps_of_three_vendors(phone, level, temp_c, charging):
    text = dump(phone, "battery")
    assert parse_dumpsys_battery(text) == (level, temp_c)
    assert parse_charging(text) is charging


def test_a_hal_that_is_not_ready_gives_no_temperatures():
    # ThermalManagerService stops its dump at `HAL Ready: false`; Thermal Status stays at
    # Integer.MIN_VALUE until the HAL says anything.
    text = "IsStatusOverride: false\nThermal Status: -2147483648\nCached temperatures:\nHAL Ready: false\n"
    assert parse_hal_temperatures(text) == [] and parse_thermal_status(text) is None
