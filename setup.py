"""pbr does the packaging; this file only adds what is compiled for the engines.

* The libdtrace binding: a cffi extension built in API mode against the
  platform's <dtrace.h> when one is found (see
  smartos_telemetry/engines/dtrace/build_binding.py).
* The libbpf binding: a cffi extension built against <bpf/libbpf.h> when it
  is found (smartos_telemetry/engines/libbpf/build_binding.py), and with it
  the BPF objects (d_scripts/linux/*.bpf.c, compiled by clang against the
  kernel's BTF; build_objects.py, cached by their inputs) when clang,
  bpftool and kernel BTF are there too.
* The libbpf engine's histogram decode, a small C extension
  (smartos_telemetry/engines/libbpf/_zone_histograms.c; needs only a C
  compiler and Python's headers, as cffi does).

Where something is missing, the package installs without that part and the
engine says why it is unavailable when used.
"""

import os
import sys

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINES = os.path.join(HERE, "smartos_telemetry", "engines")
sys.path.insert(0, os.path.join(ENGINES, "dtrace"))
import build_binding  # noqa: E402

sys.path[0] = os.path.join(ENGINES, "libbpf")
import build_objects  # noqa: E402

del sys.modules["build_binding"]
import build_binding as libbpf_binding  # noqa: E402

sys.path.pop(0)

OBJECTS = "smartos_telemetry/engines/libbpf/objects"


def build_bpf_objects(command):
    """The BPF objects: into the build tree for a wheel, and into the source
    tree for an in-place or editable install."""
    lacks = build_objects.missing_tools()
    if lacks:
        print("smartos-telemetry: BPF objects not built (no " + ", ".join(lacks)
              + "): the libbpf engine will be unavailable", file=sys.stderr)
        return
    targets = {os.path.join(command.build_lib, OBJECTS)}
    if command.inplace or getattr(command, "editable_mode", False):
        targets.add(os.path.join(HERE, OBJECTS))
    for target in sorted(targets):
        build_objects.build(out_dir=target, log=lambda m: print(m, file=sys.stderr))


class Distribution(setuptools.Distribution):
    """Runs build_bpf_objects after build_ext -- whichever build_ext class
    pbr and cffi settle on (pbr replaces a ``cmdclass`` given to setup())."""

    def get_command_class(self, command):
        cls = super().get_command_class(command)
        if command != "build_ext" or getattr(cls, "builds_bpf_objects", False):
            return cls

        class BuildExtWithBpf(cls):
            builds_bpf_objects = True

            def run(self):
                super().run()
                build_bpf_objects(self)

        self.cmdclass[command] = BuildExtWithBpf
        return BuildExtWithBpf


modules = []
if build_binding.find_header() is not None:
    modules.append("smartos_telemetry/engines/dtrace/build_binding.py:ffibuilder")
if libbpf_binding.find_header() is not None:
    modules.append("smartos_telemetry/engines/libbpf/build_binding.py:ffibuilder")

extra = {"distclass": Distribution,
         # optional: a host without a C compiler still installs; the libbpf
         # engine then says the decode is missing (maps.py)
         "ext_modules": [setuptools.Extension(
             "smartos_telemetry.engines.libbpf._zone_histograms",
             ["smartos_telemetry/engines/libbpf/_zone_histograms.c"], optional=True)]}
if modules:
    extra["cffi_modules"] = modules
    extra["setup_requires"] = ["pbr>=2.0.0", "cffi>=1.15"]
else:
    extra["setup_requires"] = ["pbr>=2.0.0"]

setuptools.setup(pbr=True, **extra)
