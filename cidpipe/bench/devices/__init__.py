"""Bench targets: this machine, SSH hosts and Jetson boards (see recipes/devices.example.yaml)."""

from cidpipe.bench.devices.inventory import DeviceSpec, Inventory, get_device, load_inventory
from cidpipe.bench.devices.probe import check_device
from cidpipe.bench.devices.remote import list_devices, run_remote_bench
from cidpipe.bench.devices.ssh import SshTarget

__all__ = [
    "DeviceSpec",
    "Inventory",
    "SshTarget",
    "check_device",
    "get_device",
    "list_devices",
    "load_inventory",
    "run_remote_bench",
]
