"""Which engine runs here, and why.

``auto`` picks libbpf where the kernel has BTF and the shipped BPF objects
load and attach (Linux), else libdtrace where its binding loads and it can
open a handle class-wide (SmartOS, illumos, Linux with Oracle DTrace), and
bpftrace otherwise.  The decision and its reason are logged and shown by
``smartos-telemetry check``.
"""

import importlib

from oslo_log import log as logging

from smartos_telemetry.errors import ConfigError, EngineUnavailable

LOG = logging.getLogger(__name__)

#: engine name -> "module:Class"; imported only when asked for
ENGINE_CLASSES = {
    "libbpf": "smartos_telemetry.engines.libbpf.engine:LibbpfEngine",
    "dtrace": "smartos_telemetry.engines.dtrace.consumer:DTraceConsumer",
    "bpftrace": "smartos_telemetry.engines.bpftrace.engine:BpftraceEngine",
}
ENGINE_CHOICES = ("auto", *ENGINE_CLASSES)

#: script file suffix -> engine that runs it
SUFFIX_ENGINE = {".d": "dtrace", ".bt": "bpftrace"}


def engine_class(name):
    """The Engine class called ``name`` (``libbpf``, ``dtrace`` or ``bpftrace``)."""
    try:
        target = ENGINE_CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown engine {name!r}; choose one of {', '.join(ENGINE_CHOICES)}"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def choose_engine(requested="auto"):
    """Resolve ``requested`` to an available engine name.

    Returns ``(name, reason)``.  Raises EngineUnavailable when the requested
    engine (or, for ``auto``, every engine) cannot run here.
    """
    if requested != "auto":
        reason = engine_class(requested).available()
        if reason:
            raise EngineUnavailable(requested, reason)
        return requested, f"{requested} requested"
    refusals = []
    for name in ENGINE_CLASSES:
        reason = engine_class(name).available()
        if reason is None:
            why = {"libbpf": "kernel BTF present and the libbpf objects load",
                   "dtrace": "libdtrace loads",
                   "bpftrace": "bpftrace found"}[name]
            if refusals:
                why += " (" + "; ".join(refusals) + ")"
            LOG.info("engine auto: chose %s because %s", name, why)
            return name, why
        refusals.append(f"{name}: {reason}")
    raise EngineUnavailable("auto", "; ".join(refusals),
                            fix="install bpftrace (apt-get install bpftrace) or libdtrace")
