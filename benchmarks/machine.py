"""A description of the machine a benchmark ran on, printed beside every figure."""

import contextlib
import os
import platform


def describe_machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = None
    with contextlib.suppress(ValueError, OSError):
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    import keras

    load = None
    with contextlib.suppress(OSError):
        load = [round(x, 2) for x in os.getloadavg()]  # others' work on a shared machine shows here
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "load_average_1_5_15_min": load,
    }


def report(result: dict, out: str | None) -> None:
    """Print `result` as one JSON line and, with `out`, write it to that result file."""
    import json

    print(json.dumps(result))
    if out:
        with open(out, "w", encoding="utf-8") as file:
            file.write(json.dumps(result, indent=1) + "\n")
