"""Load the compiled libdtrace binding: one class per ABI family.

The cffi extension ``_libdtrace`` exists only where the package was built
against a <dtrace.h>.  Importing this module never fails; asking for the
binding where there is none raises :class:`EngineUnavailable` with the
reason.  Tests hand in other builds of the same binding (for example one
linked against the fake illumos libdtrace) through :func:`binding_from_module`.
"""

import functools
import importlib
import os

from smartos_telemetry.engines.dtrace import buckets
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
    """One loaded build of the binding: ``ffi``, ``lib`` and ABI facts.

    The two libdtrace families (illumos, Oracle DTrace 2.x) differ in how
    aggregation records are laid out, how histogram parameters are encoded
    and a few calls; each difference is a method of :class:`IllumosBinding`
    or :class:`OracleBinding`, so the consumer and the decoder never ask
    which family they run on.
    """

    #: "illumos" or "oracle" (for messages and tests)
    family = None
    #: True where a process may open only one consumer, ever
    one_consumer_per_process = False

    def __init__(self, module):
        self.module = module
        self.ffi = module.ffi
        self.lib = module.lib
        lib = self.lib
        self.agg_actions = self._agg_actions()
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

    # -- what differs between the families ----------------------------------
    def _agg_actions(self):
        raise NotImplementedError

    def init(self, handle):
        """Whatever must follow dtrace_open before options take effect; 0 or -1."""
        return 0

    def go(self, handle):
        """``dtrace_go``: 0 or -1."""
        raise NotImplementedError

    def agg_records(self, desc):
        """``(key records, value record, parameter word or None, header bytes
        before the value's buckets, normalization or None)`` of an
        aggregation description; None: read from each row."""
        raise NotImplementedError

    def row_keys_and_normal(self, aggdata, layout):
        """``(the buffer a row's key offsets index, its normalization factor)``."""
        raise NotImplementedError

    def lquantize_bounds(self, word):
        raise NotImplementedError

    def llquantize_bounds(self, word):
        raise NotImplementedError


class IllumosBinding(Binding):
    """illumos libdtrace (SmartOS): one record array, parameters in the data."""

    family = "illumos"

    def _agg_actions(self):
        return {getattr(self.lib, m): a for m, a in ILLUMOS_AGG_MACROS.items()}

    def go(self, handle):
        return self.lib.dtrace_go(handle)

    def agg_records(self, desc):
        # dtagd_rec[0] is the variable id, [1..n-2] the keys, [n-1] the value;
        # l/llquantize values start with their parameter word (8 bytes)
        recs = self.ffi.cast("dtrace_recdesc_t *", desc.dtagd_rec)
        n = desc.dtagd_nrecs
        return [recs[i] for i in range(1, n - 1)], recs[n - 1], None, 8, None

    def row_keys_and_normal(self, aggdata, layout):
        return aggdata.dtada_data, aggdata.dtada_normal or 1

    def lquantize_bounds(self, word):
        # the kernel buckets (int32_t)value (uts/common/dtrace/dtrace.c,
        # dtrace_aggregate_lquantize)
        return buckets.lquantize_bounds(*buckets.lquantize_params(word), value_bits=32)

    def llquantize_bounds(self, word):
        return buckets.llquantize_bounds(*buckets.llquantize_params_illumos(word))


class OracleBinding(Binding):
    """Oracle DTrace 2.x on Linux: keys and data apart, parameters in the signature."""

    family = "oracle"
    # after a first handle (open or closed), a second one fails in dtrace_go
    # ("BPF program load for 'dtrace:::BEGIN' failed: Bad file descriptor")
    one_consumer_per_process = True

    def _agg_actions(self):
        return dict(ORACLE_AGG_ACTIONS)

    def init(self, handle):
        return self.lib.dtrace_init(handle)

    def go(self, handle):
        return self.lib.dtrace_go(handle, 0)

    def agg_records(self, desc):
        # dtagd_krecs[0] is the aggregation id; dtagd_drecs[0] a generation counter
        krecs = [desc.dtagd_krecs[i] for i in range(1, desc.dtagd_nkrecs)]
        return krecs, desc.dtagd_drecs[1], desc.dtagd_sig, 0, desc.dtagd_normal

    def row_keys_and_normal(self, aggdata, layout):
        return aggdata.dtada_key, layout.normal or 1

    def lquantize_bounds(self, word):
        return buckets.lquantize_bounds(*buckets.lquantize_params(word), value_bits=64)

    def llquantize_bounds(self, word):
        return buckets.llquantize_bounds_oracle(*buckets.llquantize_params_oracle(word))


@functools.cache
def binding_from_module(module):
    return (OracleBinding if module.lib.ST_ABI_ORACLE else IllumosBinding)(module)


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
