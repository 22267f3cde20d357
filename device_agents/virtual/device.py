"""Run one virtual Android device: sandbox layout, fault watching, and the ADB listener."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Callable, Optional

from device_agents.virtual.adb_auth import TRUSTED_KEYS_FILE, TrustedKeys
from device_agents.virtual.faults import FaultWatcher
from device_agents.virtual.protocol import device_banner
from device_agents.virtual.sandbox import Sandbox, VirtualDeviceConfig
from device_agents.virtual.services import FEATURES, DeviceServices
from device_agents.virtual.transport import DeviceServer

log = logging.getLogger("bench.virtual.device")

LISTEN_HOST = "127.0.0.1"
# How often the thermal files are brought in line with the temperature fault.
FAULT_POLL_S = 0.25


async def _follow_temperature(sandbox: Sandbox, faults: FaultWatcher) -> None:
    applied: Optional[float] = None
    sandbox.apply_temperature(None)
    while True:
        wanted = faults.current().temperature_c
        if wanted != applied:
            sandbox.apply_temperature(wanted)
            applied = wanted
        await asyncio.sleep(FAULT_POLL_S)


async def serve_async(config: VirtualDeviceConfig,
                      on_listening: Optional[Callable[[int], None]] = None) -> None:
    if config.host_cpus:
        # The device's own adbd work and everything it launches run on its cores only.
        os.sched_setaffinity(0, set(config.host_cpus))
    sandbox = Sandbox(config.state_dir, profile=config.profile())
    sandbox.create_layout(config)
    faults = FaultWatcher(config.state_dir)
    services = DeviceServices(config=config, sandbox=sandbox, faults=faults)
    trusted_keys = TrustedKeys(Path(config.state_dir) / TRUSTED_KEYS_FILE)
    server = DeviceServer(device_banner(config.props(), FEATURES), services.open, faults,
                          trusted_keys)
    port = await server.start(LISTEN_HOST, config.port)
    if port != config.port:  # port 0 asked for any free port: record the one we got
        config.port = port
        config.save()
    log.info("device %s listening on %s:%d", config.serial, LISTEN_HOST, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    thermal = asyncio.create_task(_follow_temperature(sandbox, faults))
    if on_listening is not None:
        on_listening(port)
    try:
        await stop.wait()
    finally:
        thermal.cancel()
        await server.stop()
        # Stream tasks (running commands) are cancelled so their children get killed.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def serve(config: VirtualDeviceConfig,
          on_listening: Optional[Callable[[int], None]] = None) -> None:
    """Serve the device until SIGTERM/SIGINT; ``on_listening(port)`` once connections are accepted."""
    asyncio.run(serve_async(config, on_listening))
