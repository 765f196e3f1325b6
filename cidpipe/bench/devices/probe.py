"""What a device offers: python, numpy, inference backends and, on a Jetson, L4T / power mode / clocks.

Used by ``cidpipe devices check NAME`` and as the pre-flight of every remote bench (so a missing python or
onnxruntime is reported as such before anything is uploaded).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

from cidpipe.bench.devices.inventory import DeviceSpec
from cidpipe.bench.devices.ssh import COMMAND_NOT_FOUND, SshTarget, last_line
from cidpipe.errors import DeviceError, UsageError

UNKNOWN = "unknown"
BACKEND_MODULES = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}

# Runs on the device's python: stays compatible with old board pythons (3.6 on JetPack 4), prints JSON.
PROBE_SCRIPT = """\
import json, platform, sys
report = {"python": platform.python_version(), "executable": sys.executable, "machine": platform.machine()}
modules = {}
for name in sys.argv[1:]:
    try:
        module = __import__(name)
        info = {"available": True, "version": str(getattr(module, "__version__", "unknown"))}
        if name == "onnxruntime":
            info["providers"] = list(module.get_available_providers())
    except Exception as exc:
        info = {"available": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    modules[name] = info
report["modules"] = modules
print(json.dumps(report))
"""

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # JetPack installs it here, not on PATH
FIND_TRTEXEC = f'command -v trtexec || {{ [ -x {JETPACK_TRTEXEC} ] && echo {JETPACK_TRTEXEC}; }}'

# Extra PATH entries for board tools: a non-root ssh session often lacks /usr/sbin (nvpmodel lives there).
_WITH_SBIN = 'PATH="$PATH:/usr/sbin:/sbin:/usr/bin"; export PATH; exec "$@"'


def probe_python(device: DeviceSpec, modules: list[str], target: SshTarget | None = None) -> dict[str, Any]:
    """Run the probe with the device's python; missing python is a DeviceError, missing modules are data."""
    argv = [device.remote_python, "-c", PROBE_SCRIPT, *modules]
    if device.kind == "local":
        argv[0] = sys.executable
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=device.command_timeout_s)
    else:
        if target is None:
            raise UsageError("probe_python needs an open SshTarget for a remote device")
        completed = target.run(argv, timeout=device.connect_timeout_s + 60, what="python probe")
    if completed.returncode in (COMMAND_NOT_FOUND, 126):
        raise DeviceError(
            f"remote python {device.remote_python!r} not found on {device.name} ({device.address}): "
            "install python3 there or set remote_python in devices.yaml"
        )
    try:
        report = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        detail = last_line(completed.stderr) or last_line(completed.stdout) or f"exit {completed.returncode}"
        raise DeviceError(
            f"{device.remote_python!r} on {device.name} did not run the probe: {detail}; "
            "remote_python must be Python 3"
        ) from exc
    problem = probe_report_problem(report, modules)
    if problem:
        raise DeviceError(
            f"{device.remote_python!r} on {device.name} ({device.address}) answered the python probe with "
            f"JSON of the wrong shape ({problem}); remote_python must be a plain Python 3 interpreter"
        )
    return report


def probe_report_problem(report: Any, modules: list[str]) -> str | None:
    """What is wrong with a probe answer (None when it has the shape PROBE_SCRIPT prints)."""
    if not isinstance(report, dict):
        return f"a JSON {type(report).__name__}, not an object"
    for key in ("python", "executable", "machine"):
        if not isinstance(report.get(key), str):
            return f"no {key!r} string"
    found = report.get("modules")
    if not isinstance(found, dict):
        return "no 'modules' object"
    for name in modules:
        info = found.get(name)
        if not isinstance(info, dict) or not isinstance(info.get("available"), bool):
            return f"no availability for module {name!r}"
    return None


def require_modules(device: DeviceSpec, probe: dict[str, Any], modules: list[str]) -> None:
    """DeviceError naming the first module the device's python lacks, with the install hint."""
    for name in modules:
        info = probe["modules"].get(name, {})
        if not info.get("available"):
            hint = {
                "tensorrt": "use JetPack's python3 (TensorRT comes with JetPack) or install the TRT wheel",
                "onnxruntime": "pip install onnxruntime there (onnxruntime-gpu / the JetPack wheel for CUDA)",
            }.get(name, f"pip install {name} there")
            raise DeviceError(
                f"{name} is not importable by {device.remote_python} on {device.name} ({device.address}): "
                f"{hint}, or point remote_python at a python that has it"
            )


def optional_output(target: SshTarget, argv: list[str]) -> str | None:
    """stdout of a command that may be absent on this board; None when it is missing or fails."""
    try:
        completed = target.run(["sh", "-c", _WITH_SBIN, "sh", *argv],
                               timeout=target.device.connect_timeout_s + 30, what=argv[0])
    except DeviceError:
        return None
    output = completed.stdout.strip()
    return output if completed.returncode == 0 and output else None


def parse_l4t_release(text: str | None) -> str:
    """'# R35 (release), REVISION: 4.1, ...' -> 'R35.4.1'."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    return f"R{match.group(1)}.{match.group(2)}" if match else UNKNOWN


def parse_power_mode(text: str | None) -> str:
    """``nvpmodel -q`` -> 'MAXN (0)'."""
    if not text:
        return UNKNOWN
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    mode_id = lines[-1] if lines and lines[-1].isdigit() else None
    name = match.group(1) if match else lines[0]
    return f"{name} ({mode_id})" if mode_id is not None else name


def jetson_facts(target: SshTarget) -> dict[str, Any]:
    """L4T / JetPack / TensorRT versions, power mode and clocks; anything missing is 'unknown'."""
    release = optional_output(target, ["cat", "/etc/nv_tegra_release"])

    def package_version(package: str) -> str:
        return optional_output(target, ["dpkg-query", "-W", "-f=${Version}", package]) or UNKNOWN

    clocks = optional_output(target, ["jetson_clocks", "--show"])
    return {
        "l4t": parse_l4t_release(release),
        "l4t_core_package": package_version("nvidia-l4t-core"),
        "jetpack": package_version("nvidia-jetpack"),
        "tensorrt_package": package_version("tensorrt"),
        "power_mode": parse_power_mode(optional_output(target, ["nvpmodel", "-q"])),
        "clocks": clocks or UNKNOWN,
        "trtexec": _trtexec_path(target) or UNKNOWN,
        "tegrastats": optional_output(target, ["sh", "-c", "command -v tegrastats"]) or UNKNOWN,
    }


def _trtexec_path(target: SshTarget) -> str | None:
    configured = target.device.trtexec
    if configured:  # devices.yaml names it: it must be an executable there, not merely "configured"
        return configured if optional_output(target, ["sh", "-c", 'test -x "$1" && echo "$1"', "sh",
                                                      configured]) else None
    found = optional_output(target, ["sh", "-c", FIND_TRTEXEC])
    return found.splitlines()[-1] if found else None


def jetson_problem(device: DeviceSpec, facts: dict[str, Any]) -> str | None:
    """One line naming what a ``kind: jetson`` board lacks (L4T, trtexec, tegrastats), or None.

    A Jetson bench builds engines with trtexec and samples power with tegrastats, and L4T is what makes
    the board a Jetson; without them it would "pass" a check and then fail (or measure no power) later.
    """
    missing = []
    if facts.get("l4t") == UNKNOWN and facts.get("l4t_core_package") == UNKNOWN:
        missing.append("L4T (no /etc/nv_tegra_release, no nvidia-l4t-core package)")
    if facts.get("trtexec") == UNKNOWN:
        where = device.trtexec or f"not on PATH, not at {JETPACK_TRTEXEC}"
        missing.append(f"TensorRT's trtexec ({where})")
    if facts.get("tegrastats") == UNKNOWN:
        missing.append("tegrastats")
    if not missing:
        return None
    return (f"kind: jetson, but {device.address} lacks {', '.join(missing)}: install JetPack there (or "
            "set trtexec: in devices.yaml), or use kind: ssh for a board that is not a Jetson")


def check_device(device: DeviceSpec) -> dict[str, Any]:
    """Reachability, python, backends (versions, ORT providers) and Jetson facts of one device.

    Raises DeviceError when the device cannot be reached or has no usable python; missing backends and,
    for ``kind: jetson``, missing L4T / trtexec / tegrastats are listed under ``problems`` (the CLI exits
    8 when it is non-empty).
    """
    started = time.monotonic()
    report: dict[str, Any] = {"name": device.name, "kind": device.kind, "address": device.address}
    modules = ["numpy", *BACKEND_MODULES.values()]
    if device.kind == "local":
        probe = probe_python(device, modules)
    else:
        with SshTarget(device) as target:
            target.connect()
            report["connect_s"] = round(time.monotonic() - started, 3)
            probe = probe_python(device, modules, target)
            if device.kind == "jetson":
                report["jetson"] = jetson_facts(target)
    report["reachable"] = True
    report["python"] = {"path": device.remote_python if device.kind != "local" else probe["executable"],
                        "version": probe["python"], "machine": probe["machine"]}
    report["numpy"] = probe["modules"]["numpy"]
    report["backends"] = {backend: probe["modules"][module] for backend, module in BACKEND_MODULES.items()}
    problems = []
    if not report["numpy"].get("available"):
        problems.append("numpy missing: the device runtime needs it")
    if not any(info.get("available") for info in report["backends"].values()):
        problems.append("neither onnxruntime nor tensorrt is importable: nothing can be benchmarked")
    if "jetson" in report:
        problem = jetson_problem(device, report["jetson"])
        if problem:
            problems.append(problem)
    report["problems"] = problems
    report["check_s"] = round(time.monotonic() - started, 3)
    return report


def require_device_ready(device: DeviceSpec, *, tolerate_unreachable: bool = False) -> None:
    """DeviceError (exit 8) when an SSH device lacks python / numpy / a backend, or a ``kind: jetson`` board
    also L4T / trtexec / tegrastats.

    The plan-time check of a recipe that benches on the board (``run --dry-run`` and every run). A board
    that cannot be reached at all is left to the bench when device failures are tolerated (it becomes
    failed rows there); otherwise that fails here too, before anything trains.
    """
    try:
        report = check_device(device)
    except DeviceError:
        if tolerate_unreachable:
            return
        raise
    if report["problems"]:
        raise DeviceError(f"{device.name}: {'; '.join(report['problems'])}")
