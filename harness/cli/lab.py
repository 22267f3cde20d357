"""`bench devices` and `bench lab ...`: the devices bench reaches, the virtual lab, and
joining a lab of many hosts."""
from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.types import check_number_text, integer
from harness.cli.main import _echo_err, cli
from harness.errors import UserError


# -- devices ------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON list instead of a table.")
def devices(as_json):
    """List devices of every known adb server (the virtual lab's when one is up)."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from harness.targets.adb.discovery import known_servers, list_targets
    from harness.targets.adb.session import DeviceInfo, DeviceSession
    from harness.errors import DeviceError

    targets, unreachable = list_targets(known_servers())

    def describe(t):
        if t.state != "device":
            return DeviceInfo(t.serial, t.server.name, t.state)
        try:
            return DeviceSession(t.serial, t.server, timeout_s=10).info()
        except DeviceError:
            return DeviceInfo(t.serial, t.server.name, "unresponsive")

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        infos = [i.to_dict() for i in pool.map(describe, targets)]
    for name, why in unreachable.items():
        _echo_err(f"warning: {why}")
    if as_json:
        click.echo(json.dumps(infos, indent=1))
        return
    if not infos:
        click.echo("no devices (start a virtual lab with `bench lab up --virtual 2`)")
        return
    # The table keeps to what tells devices apart; --json has every reading.
    columns = {"serial": "serial", "server": "server", "state": "state", "model": "model",
               "abi": "abi", "sdk": "sdk", "battery_pct": "battery %",
               "temperature_c": "temperature °C", "thermal_status": "thermal status"}
    frame = pd.DataFrame(infos)[list(columns)].rename(columns=columns)
    click.echo(frame.to_string(index=False, na_rep="-"))


# -- doctor -------------------------------------------------------------------------------------
@cli.command()
@click.argument("selector", default="all", required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config (default: ./bench.toml when present).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tables.")
def doctor(selector, config_path, as_json):
    """Per device: ABI, SDK, benchmark_model flavour and version, root, performance mode,
    taskset, temperatures, zones, free space, battery, lock; each red item with its fix."""
    from harness.config import load_config
    from harness.targets.doctor import doctor_devices

    reports = doctor_devices(selector, load_config(config_path))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=1))
    else:
        marks = {"ok": "  ", "note": "--", "red": "!!"}
        for report in reports:
            click.echo(f"{report.device_id or report.serial} ({report.serial}, "
                       f"{report.model or 'model ?'})")
            width = max(len(c.name) for c in report.checks)
            for check in report.checks:
                click.echo(f"  {marks[check.status.value]} {check.name:<{width}}  {check.found}")
                if check.fix:
                    click.echo(f"     {'':<{width}}  fix: {check.fix}")
        red = sum(len(r.red) for r in reports)
        click.echo(f"{len(reports)} device(s); {red} red item(s)" + (
            "" if red else "; notes (--) are recorded with each sample as unavailable"))
    if any(r.red for r in reports):
        raise SystemExit(1)


# -- lab ----------------------------------------------------------------------------------------
def _shipped_profiles() -> list[str]:
    from device_agents.virtual.profile import shipped_profiles

    return shipped_profiles() or ["none yet"]


@cli.group()
def lab():
    """A virtual lab of Android devices with an adb server of its own; joining a lab of many hosts."""


@lab.command("up")
@click.option("--virtual", "n", type=integer(1), required=True, help="Number of virtual devices.")
@click.option("--shared-cpus", is_flag=True,
              help="Run every device on all host cores (default: host cores of its own each).")
@click.option("--authorize-key", "authorize_keys", multiple=True, metavar="PATH",
              type=click.Path(path_type=Path),
              help="Also trust this adb public key (an adbkey.pub; repeatable). By default the "
                   "devices trust only ~/.android/adbkey.pub, the key of the lab's adb server.")
@click.option("--serial-prefix", default="VIRT", show_default=True,
              help="The devices' ro.serialno is PREFIX0001, PREFIX0002...: give each lab host "
                   "of a cluster its own, so device identities stay unique.")
@click.option("--profile", default=None, metavar="DIR|NAME",
              help="Answer as a recorded phone: a folder made by `bench lab record-profile`, or "
                   "a profile bench ships (" + ", ".join(_shipped_profiles()) + "). Timings stay "
                   "host-CPU measurements.")
@click.option("--root", "rooted", is_flag=True,
              help="Give the devices su (Magisk's), as a rooted phone: bench then pins governors.")
@click.option("--flavour", type=click.Choice(["tflite", "litert"]), default="tflite",
              show_default=True,
              help="The benchmark_model bench ships them: the classic TFLite tool or LiteRT's.")
def lab_up_cmd(n, shared_cpus, authorize_keys, serial_prefix, profile, rooted, flavour):
    """Start N virtual devices and their adb server; returns when all are `device`."""
    from harness.targets.adb.virtual_lab import lab_up

    state = lab_up(n, own_cpus=not shared_cpus, authorize_keys=authorize_keys,
                   serial_prefix=serial_prefix, profile=profile, rooted=rooted, flavour=flavour)
    click.echo(f"virtual lab up: adb server 127.0.0.1:{state.adb_port} "
               f"(adb -P {state.adb_port} devices -l)")
    for d in state.devices:
        click.echo(f"  {d.serial}  device  (pid {d.pid}, {_host_cpus_text(d.host_cpus)}, "
                   f"sandbox {d.state_dir}/fs)")
    _warn_shared_cpus({d.serial: d.host_cpus for d in state.devices})


def _host_cpus_text(host_cpus: list[int] | None) -> str:
    return "all host cores" if not host_cpus else (
        "host core" + ("s " if len(host_cpus) > 1 else " ") + ",".join(map(str, host_cpus)))


def _warn_shared_cpus(slices: dict) -> None:
    from harness.targets.adb.virtual_lab import shared_cores

    shared = shared_cores(slices)
    if shared:
        cores = ", ".join(f"{cpu} ({' '.join(names)})" for cpu, names in shared.items())
        click.echo(f"warning: devices share host cores {cores}: launches that overlap in time "
                   "slow each other down; compare such devices' timings with care", err=True)


@lab.command("join")
@click.option("--address", required=True, metavar="HEAD:PORT",
              help="The Ray cluster's head (`ray start --head --port PORT` on the head host).")
@click.option("--name", default=None, metavar="NAME",
              help="This lab host's name in results and `--devices server:NAME` (default: the "
                   "host name).")
@click.option("--adb-server", "adb_servers", multiple=True, metavar="HOST:PORT",
              help="Reach the devices of this adb server (repeatable; default: this host's: "
                   "[lab.servers], the virtual lab's, or 127.0.0.1:5037).")
@click.option("--ray-arg", "ray_args", multiple=True, metavar="ARG",
              help="Passed on to `ray start` (repeatable), e.g. --ray-arg=--node-ip-address=IP.")
def lab_join_cmd(address, name, adb_servers, ray_args):
    """Make this host a lab host of a Ray cluster: a Ray node and a host agent for its phones."""
    from device_agents.host_agent.join import join_lab

    servers = [_adb_server_option(text) for text in adb_servers] or None
    joined = join_lab(address, name, servers, tuple(ray_args))
    click.echo(f"lab host {joined.host} joined the cluster at {address} (node {joined.node_id})")
    for d in joined.devices:
        click.echo(f"  {d['serial']}  {d['state']}  ({d['identity'] or '?'}, "
                   f"model {d['model'] or '?'}, adb server {d['adb_server']})")
    if not joined.devices:
        click.echo("  no device yet: the agent adds phones as they come")


def _adb_server_option(text: str):
    from harness.targets.adb.session import AdbServer

    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--adb-server {text}: give HOST:PORT, e.g. 127.0.0.1:5037")
    return AdbServer(host, int(port), name=text)


def one_device(serial: str):
    """The device an adb serial or a ro.serialno names, online (UserError otherwise)."""
    from harness.targets.adb.provider import AdbProvider

    targets = AdbProvider().discover()
    matches = [t for t in targets if t.serial == serial] or [
        t for t in targets if t.listed_state == "device" and t.identity() == serial]
    if not matches:
        known = ", ".join(t.serial for t in targets) or "none"
        raise UserError(f"{serial}: no such device (adb serials: {known}; `bench devices` lists "
                        "them)")
    target = matches[0]
    if target.state() != "device":
        raise UserError(f"{serial}: {target.state()}; connect it (and accept its adb key prompt "
                        "on the phone) first")
    return target


@lab.command("record-profile")
@click.argument("serial")
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--keep-serial", is_flag=True,
              help="Keep the phone's serial numbers in getprop.txt (redacted by default).")
def lab_record_profile_cmd(serial, out_dir, keep_serial):
    """Record a connected phone as a profile: `bench lab up --virtual N --profile DIR` then
    answers as it does (getprop, dumpsys, CPU and thermal files, denied paths)."""
    from harness.targets.profile_recorder import record_profile

    target = one_device(serial)
    recorded = record_profile(target, out_dir, keep_serial=keep_serial, serial_label=serial)
    click.echo(f"profile of {recorded.model or serial} in {out_dir}: {len(recorded.files)} files"
               + (f", {len(recorded.denied)} denied path(s) in denied.txt" if recorded.denied else ""))
    click.echo(f"  replay it: bench lab up --virtual 1 --profile {out_dir}")


@lab.command("status")
@click.option("--json", "as_json", is_flag=True)
def lab_status_cmd(as_json):
    """Show the lab's adb server and devices."""
    from harness.targets.adb.virtual_lab import lab_status

    status = lab_status()
    if as_json:
        click.echo(json.dumps(status, indent=1))
        return
    if not status["up"]:
        click.echo("no virtual lab is up")
        return
    alive = "running" if status["adb_server_alive"] else "NOT running"
    click.echo(f"adb server {status['adb_server']} ({alive})")
    for d in status["devices"]:
        proc = "running" if d["process_alive"] else "stopped"
        click.echo(f"  {d['serial']}  {d['adb_state']}  (process {proc}, pid {d['pid']}, "
                   f"{_host_cpus_text(d.get('host_cpus'))})")
    _warn_shared_cpus({d["serial"]: d.get("host_cpus") for d in status["devices"]})


@lab.command("down")
def lab_down_cmd():
    """Stop exactly the processes `bench lab up` started."""
    from harness.targets.adb.virtual_lab import lab_down

    click.echo(f"virtual lab down ({lab_down()} process(es) stopped)")


@lab.command("fault")
@click.argument("serial")
@click.argument("settings", nargs=-1, metavar="NAME=VALUE...")
@click.option("--clear", is_flag=True, help="Switch every fault off first.")
def lab_fault_cmd(serial, settings, clear):
    """Switch faults of a running virtual device, e.g. battery_level=10 or benchmark_hang=true."""
    from device_agents.virtual.faults import fault_value_problem
    from harness.targets.adb.virtual_lab import lab_fault

    changes = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep:
            raise UserError(f"{setting}: expected NAME=VALUE, e.g. temperature_c=48")
        changes[name] = _fault_value(value)
        problem = fault_value_problem(name, changes[name])
        if problem:  # before the lab is looked for: a bad value is the same on any device
            raise UserError(f"{setting}: {problem}")
    active = lab_fault(serial, changes, clear=clear)
    click.echo(f"{serial}: faults now {active or 'none'}")


def _fault_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null", "off"):
        return None
    if lowered.isalpha() and lowered not in ("inf", "infinity", "nan"):
        # output_fault=short|missing|crash (fault_value_problem checks which key takes a word)
        return lowered
    # inf, nan, 1e999: no fault value (byte counts may pass 2**31, so a 64-bit bound here)
    check_number_text(text, f"fault value {text}", magnitude=2**63 - 1)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    raise UserError(f"{text}: fault values are numbers, true/false, none or a word")
