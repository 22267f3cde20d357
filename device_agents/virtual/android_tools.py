"""Android system tools of the virtual device: getprop, dumpsys, settings, cmd, logcat, getenforce.

Battery and thermal state come from the fault switches (``battery_level``, ``temperature_c``);
``settings`` and ``cmd power`` state is kept in ``<state_dir>/settings.json`` so it survives
between shell streams like a phone's settings do.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from device_agents.virtual.shell_io import Streams

if TYPE_CHECKING:  # pragma: no cover
    from device_agents.virtual.shell import Interpreter

SETTINGS_FILE = "settings.json"
FIXED_PERFORMANCE_MIN_SDK = 30  # `cmd power set-fixed-performance-mode-enabled`: Android 11
THERMAL_SERVICE_MIN_SDK = 29    # `dumpsys thermalservice`: Android 10
NORMAL_BATTERY_LEVEL = 85
NORMAL_BATTERY_TEMPERATURE_C = 29.0
FIXED_PERFORMANCE_KEY = "power:fixed_performance_mode"
# (zone name, HAL temperature type, normal temperature) as in the sandbox's thermal zones.
THERMAL_SENSORS = (("cpu-0-0-usr", 0, 35.0), ("battery", 2, 29.0), ("skin-therm", 3, 31.0))


# -- settings state -------------------------------------------------------------------------------
def load_settings(sh: "Interpreter") -> dict[str, str]:
    try:
        return json.loads((sh.ctx.sandbox.state_dir / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def save_settings(sh: "Interpreter", settings: dict[str, str]) -> None:
    path = sh.ctx.sandbox.state_dir / SETTINGS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    tmp.replace(path)


def device_sdk(sh: "Interpreter") -> int:
    sdk = sh.ctx.config.props().get("ro.build.version.sdk", "")
    return int(sdk) if sdk.isdigit() else 0


# -- su (a rooted phone: `bench lab up --root`) ------------------------------------------------------
# Magisk's su, the root most phones have: its usage text (topjohnwu/Magisk, native su.cpp).
MAGISK_SU_USAGE = ("MagiskSU\n\n"
                   "Usage: su [options] [-] [user [argument...]]\n\n"
                   "Options:\n"
                   "  -c, --command COMMAND         pass COMMAND to the invoked shell\n"
                   "  -h, --help                    display this help message and exit\n")


async def su(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    if args and args[0] in ("-h", "--help"):
        await io.say(MAGISK_SU_USAGE)
        return 0
    command = None
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--command"):
            if not args:
                await io.complain("su: option requires an argument -- 'c'")
                return 2
            command = args.pop(0)
        elif arg in ("-", "-l", "--login", "0", "root"):
            continue
        else:
            await io.complain(f"su: invalid argument: {arg}")
            return 2
    root = sh.subshell([sh.args[0]])
    root.uid = 0
    if command is None:  # an interactive root shell reading its commands from stdin
        command, io = io.stdin.decode(errors="replace"), Streams(b"", io.out, io.err)
    return await root.run_script(command, io)


# -- getprop ----------------------------------------------------------------------------------------
async def getprop(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    props = sh.ctx.config.props()
    if len(argv) == 1:
        await io.say("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
        return 0
    default = argv[2] if len(argv) > 2 else ""
    await io.say(props.get(argv[1], default) + "\n")
    return 0


async def getenforce(argv, sh, io: Streams) -> int:
    await io.say("Enforcing\n")
    return 0


# -- dumpsys ----------------------------------------------------------------------------------------
def thermal_status(temperature_c: float) -> int:
    """Android's throttling status (0 none .. 6 shutdown) for a temperature."""
    for limit_c, status in ((45, 0), (50, 1), (55, 2), (60, 3)):
        if temperature_c < limit_c:
            return status
    return 4


def _sensor_temperatures(sh: "Interpreter") -> list[tuple[str, int, float]]:
    faulted_c = sh.ctx.faults.current().temperature_c
    return [(name, kind, faulted_c if faulted_c is not None else normal_c)
            for name, kind, normal_c in THERMAL_SENSORS]


def battery_report(sh: "Interpreter") -> str:
    faults = sh.ctx.faults.current()
    level = faults.battery_level if faults.battery_level is not None else NORMAL_BATTERY_LEVEL
    temperature_c = faults.temperature_c if faults.temperature_c is not None else NORMAL_BATTERY_TEMPERATURE_C
    plugged = faults.charging is not False
    lines = [
        "Current Battery Service state:",
        "  AC powered: false",
        f"  USB powered: {str(plugged).lower()}",
        "  Wireless powered: false",
        "  Max charging current: 500000",
        "  Max charging voltage: 5000000",
        "  Charge counter: 3000000",
        # BatteryManager.BATTERY_STATUS_CHARGING (2) or _DISCHARGING (3).
        f"  status: {2 if plugged else 3}",
        "  health: 2",
        "  present: true",
        f"  level: {level}",
        "  scale: 100",
        "  voltage: 4000",
        f"  temperature: {int(round(temperature_c * 10))}",
        "  technology: Li-ion",
    ]
    return "\n".join(lines) + "\n"


def _temperature_line(name: str, kind: int, celsius: float) -> str:
    return f"\tTemperature{{mValue={celsius:.1f}, mType={kind}, mName={name}, mStatus={thermal_status(celsius)}}}"


def thermalservice_report(sh: "Interpreter") -> str:
    sensors = _sensor_temperatures(sh)
    hottest_c = max(c for _, _, c in sensors)
    listener = ["\tcallbacks: 1", "\tkilled: false", "\tbroadcasts count: -1"]
    temperatures = [_temperature_line(*s) for s in sensors]
    lines = [
        "IsStatusOverride: false",
        "ThermalEventListeners:", *listener,
        "ThermalStatusListeners:", *listener,
        f"Thermal Status: {thermal_status(hottest_c)}",
        "Cached temperatures:", *temperatures,
        "HAL Ready: true",
        "HAL connection:",
        "\tThermalHAL 2.0 connected: yes",
        "Current temperatures from HAL:", *temperatures,
        "Current cooling devices from HAL:",
        "\tCoolingDevice{mValue=0, mType=2, mName=thermal-cpufreq-0}",
    ]
    return "\n".join(lines) + "\n"


def power_report(sh: "Interpreter") -> str:
    # No line for the fixed performance mode: AOSP's PowerManagerService dumps none (and no
    # command reads the mode back), so neither does the virtual device.
    powered = "false" if sh.ctx.faults.current().charging is False else "true"
    return ("POWER MANAGER (dumpsys power)\n\nPower Manager State:\n"
            f"  mWakefulness=Awake\n  mIsPowered={powered}\n")


DUMPSYS_SERVICES = {"battery": battery_report, "thermalservice": thermalservice_report,
                    "power": power_report}


# -- a replayed phone's dumps, with the faults on top --------------------------------------------
# android.os.Temperature types that are not degrees Celsius (BCL_VOLTAGE mV, BCL_CURRENT mA,
# BCL_PERCENTAGE %): a temperature fault leaves them as recorded.
NOT_CELSIUS_TYPES = {6, 7, 8}
_TEMPERATURE_ITEM = re.compile(  # android.os.Temperature.toString()
    r"Temperature\{mValue=([^,]*), mType=(-?\d+), mName=(.*?), mStatus=(-?\d+)\}")


def recorded_report(sh: "Interpreter", service: str) -> str | None:
    profile = sh.ctx.sandbox.profile
    text = profile.dumpsys(service) if profile is not None else None
    if text is None:
        return None
    faults = sh.ctx.faults.current()
    if service == "battery":
        if faults.battery_level is not None:
            text = re.sub(r"(?m)^(\s*level:\s*)\d+", rf"\g<1>{faults.battery_level}", text)
        if faults.temperature_c is not None:
            text = re.sub(r"(?m)^(\s*temperature:\s*)-?\d+",
                          rf"\g<1>{int(round(faults.temperature_c * 10))}", text)
        if faults.charging is False:
            text = re.sub(r"(?m)^(\s*(?:AC|USB|Wireless|Dock) powered:\s*)true", r"\1false", text)
            text = re.sub(r"(?m)^(\s*status:\s*)\d+", r"\g<1>3", text)
    elif service == "thermalservice" and faults.temperature_c is not None:
        hot_c = faults.temperature_c

        def faulted(match: re.Match) -> str:
            if int(match.group(2)) in NOT_CELSIUS_TYPES:
                return match.group(0)
            return (f"Temperature{{mValue={hot_c:.1f}, mType={match.group(2)}, "
                    f"mName={match.group(3)}, mStatus={thermal_status(hot_c)}}}")

        text = _TEMPERATURE_ITEM.sub(faulted, text)
        text = re.sub(r"(?m)^Thermal Status: -?\d+", f"Thermal Status: {thermal_status(hot_c)}", text)
    return text


async def dumpsys(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    if len(argv) >= 2 and not argv[1].startswith("-"):
        recorded = recorded_report(sh, argv[1])
        if recorded is not None:
            await io.say(recorded)
            return 0
    if len(argv) < 2:
        await io.say("".join(f"DUMP OF SERVICE {name}:\n{report(sh)}\n"
                             for name, report in DUMPSYS_SERVICES.items()))
        return 0
    if argv[1] == "-l":
        await io.say("Currently running services:\n" + "".join(f"  {n}\n" for n in DUMPSYS_SERVICES))
        return 0
    report = DUMPSYS_SERVICES.get(argv[1])
    if argv[1] == "thermalservice" and device_sdk(sh) < THERMAL_SERVICE_MIN_SDK:
        report = None  # ThermalManagerService came with Android 10 (Thermal HAL 2.0)
    if report is None:
        await io.complain(f"Can't find service: {argv[1]}")
        return 0
    await io.say(report(sh))
    return 0


# -- settings / cmd / logcat -------------------------------------------------------------------------
SETTINGS_NAMESPACES = ("system", "secure", "global")


async def settings(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    if len(args) >= 2 and args[0] in ("get", "put", "delete", "list") and args[1] in SETTINGS_NAMESPACES:
        verb, namespace, rest = args[0], args[1], args[2:]
        stored = load_settings(sh)
        if verb == "list":
            prefix = namespace + ":"
            await io.say("".join(f"{k[len(prefix):]}={v}\n" for k, v in sorted(stored.items())
                                 if k.startswith(prefix)))
            return 0
        if not rest:
            await io.complain(f"settings: {verb}: key required")
            return 1
        key = f"{namespace}:{rest[0]}"
        if verb == "get":
            await io.say(stored.get(key, "null") + "\n")
        elif verb == "put":
            if len(rest) < 2:
                await io.complain("settings: put: value required")
                return 1
            stored[key] = rest[1]
            save_settings(sh, stored)
        else:
            existed = stored.pop(key, None) is not None
            save_settings(sh, stored)
            await io.say(f"Deleted {int(existed)} rows\n")
        return 0
    await io.complain("usage:  settings [--user <USER_ID> | current] get namespace key\n"
                      "        settings [--user <USER_ID> | current] put namespace key value")
    return 255


async def cmd(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    if not args:
        await io.complain("cmd: No service specified; use -l to list all running services.")
        return 20
    service, rest = args[0], args[1:]
    if (service == "power" and rest and rest[0] == "set-fixed-performance-mode-enabled"
            and device_sdk(sh) >= FIXED_PERFORMANCE_MIN_SDK):
        # PowerManagerShellCommand: Boolean.parseBoolean (only "true", any case, enables it);
        # success prints nothing.
        if len(rest) < 2:
            await io.complain("Exception occurred while executing 'set-fixed-performance-mode-"
                              "enabled':\njava.lang.IllegalArgumentException: Argument expected "
                              "after \"set-fixed-performance-mode-enabled\"")
            return 255
        stored = load_settings(sh)
        stored[FIXED_PERFORMANCE_KEY] = "true" if rest[1].lower() == "true" else "false"
        save_settings(sh, stored)
        return 0
    if service == "settings":
        return await settings(["settings", *rest], sh, io)
    if service in ("power", "thermalservice", "battery"):
        # ShellCommand.handleDefaultCommands: on stdout, -1 (255 as cmd's exit status); Android
        # 10 and older answer so for set-fixed-performance-mode-enabled too.
        await io.say(f"Unknown command: {rest[0] if rest else ''}\n")
        return 255
    await io.complain(f"cmd: Can't find service: {service}")
    return 20


async def logcat(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    # The virtual device keeps no log buffer: -c clears nothing, -d dumps nothing. Without -d
    # a real logcat follows the log forever; an empty log that ends is kinder to callers.
    return 0


BUILTINS = {
    "getprop": getprop, "getenforce": getenforce, "dumpsys": dumpsys,
    "settings": settings, "cmd": cmd, "logcat": logcat, "su": su,
}
