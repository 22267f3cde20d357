"""``python -m device_agents.virtual --state-dir DIR [--serial S --port P]``

Runs one virtual device from ``DIR/device.json`` (created from --serial/--port when absent;
--port 0 picks a free port). Prints ``READY <port>`` on stdout once it accepts connections.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from device_agents.virtual.device import serve
from device_agents.virtual.sandbox import DEVICE_FILE, VirtualDeviceConfig


@click.command()
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--serial", default=None, help="Serial for a new device.json.")
@click.option("--port", default=None, type=int, help="Port for a new device.json (0: any free).")
@click.option("--verbose", is_flag=True, help="Log connections and services to stderr.")
def main(state_dir: Path, serial: str | None, port: int | None, verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state_dir = state_dir.resolve()
    if (state_dir / DEVICE_FILE).exists():
        config = VirtualDeviceConfig.load(state_dir)
    else:
        if port is None:
            raise click.UsageError(f"no {DEVICE_FILE} in {state_dir}: give --port (and --serial)")
        config = VirtualDeviceConfig(serial=serial or f"virtual-{port}", port=port,
                                     state_dir=str(state_dir))
        config.save()

    def ready(bound_port: int) -> None:
        print(f"READY {bound_port}", flush=True)

    serve(config, on_listening=ready)


if __name__ == "__main__":
    main()
