"""`cidpipe devices list|check`: the target-device inventory (devices.yaml)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cidpipe.cli.common import JsonOpt, emit_json, stdout

devices_app = typer.Typer(help="List the device inventory and check a device.", no_args_is_help=True)
InventoryOpt = Annotated[
    str | None, typer.Option("--inventory", help="devices.yaml (default ./devices.yaml)")
]


@devices_app.command("list")
def list_cmd(inventory: InventoryOpt = None, json_: JsonOpt = False) -> None:
    """List the devices (no connection is made).  Example: cidpipe devices list"""
    from cidpipe.bench.devices.inventory import load_inventory
    from cidpipe.bench.devices.remote import list_devices

    rows = list_devices(load_inventory(inventory))
    if json_:
        emit_json(rows)
        return
    table = Table(title="devices")
    columns = list(rows[0]) if rows else ["name"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(str(row.get(c, ""))) for c in columns))
    stdout.print(table)


@devices_app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="device name from the inventory")],
    inventory: InventoryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Reachability, python, backends, Jetson power mode and clocks.  Example: cidpipe devices check orin"""
    from cidpipe.bench.devices.inventory import load_inventory
    from cidpipe.bench.devices.probe import check_device
    from cidpipe.errors import DeviceError

    report = check_device(load_inventory(inventory).get_device(name))
    if report.get("problems"):
        failed = DeviceError(f"{name}: {'; '.join(report['problems'])}")
        failed.result = report  # --json: what the probe found rides on the error reply
        if not json_:
            _print_report(name, report)
        raise failed
    if json_:
        emit_json(report)
    else:
        _print_report(name, report)


def _print_report(name: str, report: dict) -> None:
    from cidpipe.cli.device_report import report_rows

    table = Table(title=f"device {name}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in report_rows(report):
        table.add_row(key, escape(value))
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(devices_app, name="devices")
