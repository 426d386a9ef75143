"""Load the compiled libdtrace binding and describe its ABI family.

The cffi extension ``_libdtrace`` exists only where the package was built
against a <dtrace.h>.  Importing this module never fails; asking for the
binding where there is none raises :class:`EngineUnavailable` with the
reason.  Tests hand in other builds of the same binding (for example one
linked against the fake illumos libdtrace) through :func:`binding_from_module`.
"""

import functools
import importlib
import os

from smartos_telemetry.errors import EngineUnavailable

ENGINE = "libdtrace"

# Oracle DTrace keeps its aggregating action codes private
# (libdtrace/dt_aggregate.h): alphabetical from DTRACEACT_AGGREGATION.
ORACLE_AGG_ACTIONS = {
    0x700: "avg",
    0x701: "count",
    0x702: "llquantize",
    0x703: "lquantize",
    0x704: "max",
    0x705: "min",
    0x706: "quantize",
    0x707: "stddev",
    0x708: "sum",
}

ILLUMOS_AGG_MACROS = {
    "DTRACEAGG_COUNT": "count",
    "DTRACEAGG_MIN": "min",
    "DTRACEAGG_MAX": "max",
    "DTRACEAGG_AVG": "avg",
    "DTRACEAGG_SUM": "sum",
    "DTRACEAGG_STDDEV": "stddev",
    "DTRACEAGG_QUANTIZE": "quantize",
    "DTRACEAGG_LQUANTIZE": "lquantize",
    "DTRACEAGG_LLQUANTIZE": "llquantize",
}

DROP_KINDS = {
    "DTRACEDROP_PRINCIPAL": "principal",
    "DTRACEDROP_AGGREGATION": "aggregation",
    "DTRACEDROP_DYNAMIC": "dynamic",
    "DTRACEDROP_DYNRINSE": "dynamic_rinse",
    "DTRACEDROP_DYNDIRTY": "dynamic_dirty",
    "DTRACEDROP_SPEC": "speculative",
    "DTRACEDROP_SPECBUSY": "speculative_busy",
    "DTRACEDROP_SPECUNAVAIL": "speculative_unavailable",
    "DTRACEDROP_STKSTROVERFLOW": "stack_string_overflow",
    "DTRACEDROP_DBLERROR": "error_in_error_probe",
}


class Binding:
    """One loaded build of the binding: ``ffi``, ``lib`` and ABI facts."""

    def __init__(self, module):
        self.module = module
        self.ffi = module.ffi
        self.lib = module.lib
        self.family = "oracle" if self.lib.ST_ABI_ORACLE else "illumos"
        lib = self.lib
        if self.family == "oracle":
            self.agg_actions = dict(ORACLE_AGG_ACTIONS)
        else:
            self.agg_actions = {getattr(lib, m): a for m, a in ILLUMOS_AGG_MACROS.items()}
        self.drop_kinds = {getattr(lib, m): k for m, k in DROP_KINDS.items()}
        self.symbol_actions = {
            lib.DTRACEACT_SYM: "sym",
            lib.DTRACEACT_MOD: "mod",
            lib.DTRACEACT_USYM: "usym",
            lib.DTRACEACT_UMOD: "umod",
            lib.DTRACEACT_UADDR: "uaddr",
        }
        # callbacks are registered once per loaded module; the consumer
        # module installs them (see consumer.install_callbacks)
        self.callbacks_installed = False

    def errmsg(self, handle, err=None):
        """libdtrace's own message for ``err`` (default: the handle's errno)."""
        if err is None:
            err = self.lib.dtrace_errno(handle)
        msg = self.lib.dtrace_errmsg(handle, err)
        return self.ffi.string(msg).decode("utf-8", "replace") if msg else f"error {err}"


@functools.cache
def binding_from_module(module):
    return Binding(module)


def load_binding():
    """The installed binding, or EngineUnavailable saying why there is none."""
    try:
        module = importlib.import_module("smartos_telemetry.engines.dtrace._libdtrace")
    except ImportError as exc:
        if "_libdtrace" in str(exc) and "No module named" in str(exc):
            reason = ("smartos-telemetry was installed where no <dtrace.h> was found, "
                      "so the libdtrace binding was not built")
            fix = ("install libdtrace and its headers (SmartOS/illumos: in the base "
                   "system; Linux: Oracle DTrace, e.g. Debian's libdtrace2-dev), then "
                   "reinstall smartos-telemetry; or use --engine bpftrace on Linux")
        else:
            reason = f"the libdtrace binding does not load: {exc}"
            fix = "check that libdtrace is installed and matches the one built against"
        raise EngineUnavailable(ENGINE, reason, fix) from exc
    return binding_from_module(module)


def privileges_problem():
    """None if this process may trace, else why not."""
    if os.geteuid() != 0:
        return "DTrace needs root (or the dtrace_kernel privilege on illumos)"
    return None
