"""Load the compiled libbpf binding and the compiled BPF objects.

The cffi extension ``_libbpf`` exists only where the package was built with
<bpf/libbpf.h> (and ``_zone_histograms``, the histogram decode, where a C
compiler was there: setup.py), and the objects (``objects/*.bpf.o``) only where clang,
bpftool and kernel BTF were there too (see build_binding.py and
build_objects.py).  Importing this module never fails; asking for either
where it is missing raises :class:`EngineUnavailable` with the reason.
"""

import functools
import importlib
import json
import os

from smartos_telemetry.errors import EngineUnavailable

ENGINE = "libbpf"
OBJECT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "objects")
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
REINSTALL = ("apt-get install clang llvm libbpf-dev bpftool libelf-dev, then reinstall "
             "smartos-telemetry (tools/bootstrap); or use engine = bpftrace")


class Binding:
    """The loaded extensions: ``ffi``, ``lib`` and libbpf's version, and
    ``histograms``, the histogram decode (``_zone_histograms.c``)."""

    def __init__(self, module, histograms):
        self.ffi = module.ffi
        self.lib = module.lib
        self.histograms = histograms
        self.lib.st_log_install()
        self.version = self.ffi.string(self.lib.libbpf_version_string()).decode()
        self.ncpus = self.lib.libbpf_num_possible_cpus()

    def take_log(self):
        """libbpf's warnings since the last call (a failed load's verifier log)."""
        buf = self.ffi.new("char[]", 1 << 16)
        n = self.lib.st_log_take(buf, len(buf))
        return self.ffi.unpack(buf, n).decode("utf-8", "replace")


@functools.cache
def _binding():
    return Binding(importlib.import_module("smartos_telemetry.engines.libbpf._libbpf"),
                   importlib.import_module("smartos_telemetry.engines.libbpf._zone_histograms"))


def load_binding():
    """The installed binding, or EngineUnavailable saying why there is none."""
    try:
        return _binding()
    except ImportError as exc:
        if "_libbpf" in str(exc) and "No module named" in str(exc):
            reason = ("smartos-telemetry was installed where no <bpf/libbpf.h> was found, "
                      "so the libbpf binding was not built")
        elif "_zone_histograms" in str(exc) and "No module named" in str(exc):
            reason = ("smartos-telemetry was installed without its histogram decode "
                      "(_zone_histograms.c did not compile: no C compiler or Python headers)")
        else:
            reason = f"the libbpf binding does not load: {exc}"
        raise EngineUnavailable(ENGINE, reason, REINSTALL) from exc


def object_for(stem, source_sha256):
    """Path of the compiled ``objects/STEM.o`` built from this source, or
    EngineUnavailable saying why there is none."""
    path = os.path.join(OBJECT_DIR, f"{stem}.o")
    try:
        with open(os.path.join(OBJECT_DIR, f"{stem}.json"), encoding="utf-8") as f:
            built = json.load(f)
    except (OSError, ValueError):
        raise EngineUnavailable(
            ENGINE, f"no compiled BPF object {stem}.o in {OBJECT_DIR} (the package was built "
                    "without clang, bpftool or kernel BTF)", REINSTALL) from None
    if built.get("source_sha256") != source_sha256 or not os.path.isfile(path):
        raise EngineUnavailable(
            ENGINE, f"{stem}.o was built from another version of {built.get('source')}",
            "reinstall smartos-telemetry (tools/bootstrap) to rebuild the objects")
    return path


def objects():
    """``{stem: path}`` of every compiled object."""
    try:
        names = os.listdir(OBJECT_DIR)
    except OSError:
        return {}
    return {n[:-2]: os.path.join(OBJECT_DIR, n) for n in sorted(names) if n.endswith(".bpf.o")}
