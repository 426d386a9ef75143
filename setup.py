"""pbr does the packaging; this file only adds the libdtrace binding.

The cffi extension is built in API mode against the platform's <dtrace.h>
when one is found (see smartos_telemetry/engines/dtrace/build_binding.py).
Where there is none, the package installs without it and the dtrace engine
reports "libdtrace not available" when used.
"""

import os
import sys

import setuptools

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "smartos_telemetry", "engines", "dtrace"))
import build_binding  # noqa: E402

extra = {}
if build_binding.find_header() is not None:
    extra["cffi_modules"] = ["smartos_telemetry/engines/dtrace/build_binding.py:ffibuilder"]
    extra["setup_requires"] = ["pbr>=2.0.0", "cffi>=1.15"]
else:
    extra["setup_requires"] = ["pbr>=2.0.0"]

setuptools.setup(pbr=True, **extra)
