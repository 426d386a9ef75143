"""LibbpfEngine: a shipped CO-RE BPF program as an Engine (start, snapshot, health, stop).

One engine runs one of ``d_scripts/linux/*.bpf.c``, compiled at build time
(``build_objects.py``) and loaded in this process through libbpf
(``binding.py``): open the object, size its maps, load (libbpf relocates it
to this kernel's BTF and the verifier checks it), attach each program.  No
child process, no output stream: a snapshot reads the maps.

The source given to the engine names the object (by file name) and must be
the source it was built from (sha256 in ``objects/NAME.bpf.json``); its
``Contract:`` header names the maps to read -- each aggregation is an
mmap-able array of the same name indexed by zone slot (``maps.ZoneSlots``;
a zone is a cgroup-v2 id): ``llquantize`` ones hold histograms
(``maps.HIST_SLOTS`` log-linear slots), ``count`` and ``sum`` ones a u64.

Values are cumulative since start.  Zones whose cgroup is gone give their
slots back every ``reclaim_interval`` seconds; their last values are kept
here, so every later snapshot still holds them and a zone's totals -- and
those of the zone a child cgroup rolls up into -- never drop.

Health: ``drops["zones_full"]`` (events of a zone past ``max_zones``),
``drops["pending_full"]`` (I/Os or connects that could not be timed: the
in-flight map was full), ``errors["task_storage"]`` (task storage the
kernel would not give).

Options:

=================  =====================================================
max_zones          entries of every zone map (1000)
max_pending        in-flight I/Os and connects timed at once (16384)
runq_design        auto | sched_info | wakeup_stamp (runqueue.bpf.c)
reclaim_interval   seconds between checks for dead cgroups (10; 0: each
                   snapshot)
=================  =====================================================
"""

import gc
import os
import threading
import time

from oslo_log import log as logging

from smartos_telemetry import scripts
from smartos_telemetry.engines.base import Engine
from smartos_telemetry.engines.libbpf import binding as binding_mod
from smartos_telemetry.engines.libbpf.cgroup_ids import CgroupIds
from smartos_telemetry.engines.libbpf.maps import (
    HIST_WORDS,
    SLOT_MAPS,
    ZoneSlots,
    percpu_sums,
)
from smartos_telemetry.errors import (
    ConfigError,
    EngineError,
    EngineUnavailable,
    ProbeNotFound,
    ScriptCompileError,
    TelemetryError,
)
from smartos_telemetry.snapshot import Aggregation, EngineHealth, Snapshot

LOG = logging.getLogger(__name__)

OPTIONS = {
    "max_zones": (int, 1000),
    "max_pending": (int, 16384),
    "runq_design": (str, "auto"),
    "reclaim_interval": (float, 10.0),
}
RUNQ_DESIGNS = ("auto", "sched_info", "wakeup_stamp")

#: st_stats slots (st_common.bpf.h) -> (health counter, kind)
STAT_SLOTS = {0: ("drops", "zones_full"), 1: ("drops", "pending_full"),
              2: ("errors", "task_storage")}

#: maps holding in-flight state, sized by max_pending
PENDING_MAPS = ("io_start", "syn_start")
#: programs of the run queue's wakeup-stamp design
STAMP_PROGRAMS = ("runq_switch_stamps", "runq_wakeup", "runq_wakeup_new")
#: programs of the run queue's sched_info design
SCHED_INFO_PROGRAMS = ("runq_switch", "runq_migrate")


def parse_options(options):
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"unknown libbpf engine option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(OPTIONS))}")
    parsed = {}
    for name, (kind, default) in OPTIONS.items():
        value = options.get(name, default)
        try:
            parsed[name] = kind(value)
        except ValueError:
            raise ConfigError(f"libbpf option {name}={value!r}: expected {kind.__name__}") \
                from None
    if parsed["runq_design"] not in RUNQ_DESIGNS:
        raise ConfigError(f"libbpf option runq_design={parsed['runq_design']!r}: choose "
                          + ", ".join(RUNQ_DESIGNS))
    if parsed["max_zones"] < 1 or parsed["max_pending"] < 1:
        raise ConfigError("libbpf options max_zones and max_pending must be at least 1")
    return parsed


def object_stem(script_name):
    """``linux/runqueue.bpf.c`` -> ``runqueue.bpf``."""
    base = os.path.basename(script_name)
    if not base.endswith(".bpf.c"):
        raise ConfigError(f"{script_name}: the libbpf engine runs the shipped *.bpf.c "
                          "programs only")
    return base[:-2]


def btf_problem():
    if not os.path.exists(binding_mod.VMLINUX_BTF):
        return f"this kernel has no BTF ({binding_mod.VMLINUX_BTF}; CONFIG_DEBUG_INFO_BTF)"
    return None


class LibbpfEngine(Engine):
    name = "libbpf"

    def __init__(self, source, script_name=None, options=None):
        super().__init__(source, script_name, options)
        self.opts = parse_options(self.options)
        self.contract = scripts.contract(source)
        self.stem = object_stem(self.script_name)
        self._lock = threading.Lock()
        self._b = None
        self._obj = None
        self._links = []
        self._zones = None        # ZoneSlots: the zones and their aggregations
        self._stats_map = None
        self._retired = {}        # aggregation name -> {cgroup id: list of u64}
        self._cgroups = None
        self._last_reclaim = 0.0
        self._stopped = False
        self.loaded_programs = []  # names of the attached programs
        self.design = None         # runqueue.bpf.c: the design it runs
        self.ready_after = None    # seconds from start() to attached
        self.reclaimed = 0         # zone entries taken out of the kernel maps
        self.trial = False         # started only to see that it loads (quiet)

    # -- availability --------------------------------------------------------------

    @classmethod
    def available(cls):
        try:
            binding_mod.load_binding()
        except EngineUnavailable as exc:
            return exc.reason
        if os.geteuid() != 0:
            return "loading BPF programs needs root (or CAP_BPF and CAP_PERFMON)"
        problem = btf_problem()
        if problem:
            return problem
        if not binding_mod.objects():
            return ("the BPF objects were not built (no clang, bpftool or kernel BTF when "
                    "smartos-telemetry was installed)")
        return cls.trial_load()

    _trial = None

    @classmethod
    def trial_load(cls):
        """None if every shipped program loads and attaches here, else why not.

        Done once per process (each object is started and stopped: the
        verifier and the attach are the only proof that a CO-RE object
        suits this kernel)."""
        if cls._trial is None:
            problems, loaded = [], {}
            for rel in scripts.shipped_with_suffix(".bpf.c"):
                try:
                    with open(scripts.script_path(rel), encoding="utf-8") as f:
                        engine = cls(f.read(), rel)
                    engine.trial = True
                    engine.start()
                    engine.stop()
                    loaded[rel] = engine.loaded_programs + (
                        [f"design {engine.design}"] if engine.design else [])
                except (TelemetryError, OSError) as exc:
                    problems.append(f"{rel}: {exc}")
            cls._trial, cls.trial_programs = "; ".join(problems) or "", loaded
        return cls._trial or None

    #: after trial_load: {script: [program names attached, "design ..."]}
    trial_programs = {}

    @classmethod
    def describe(cls):
        """What ``smartos-telemetry check`` shows: version, BTF, objects, programs."""
        out = {"btf": os.path.exists(binding_mod.VMLINUX_BTF),
               "objects": sorted(binding_mod.objects()), "version": None}
        try:
            out["version"] = binding_mod.load_binding().version
        except EngineUnavailable as exc:
            out["unavailable"] = exc.reason
            return out
        out["unavailable"] = cls.available()
        out["programs"] = dict(cls.trial_programs)
        return out

    @classmethod
    def version(cls):
        return "libbpf " + binding_mod.load_binding().version

    # -- lifecycle -----------------------------------------------------------------

    def start(self):
        if self._obj is not None:
            raise EngineError(self.name, "already started")
        t0 = time.monotonic()
        b = self._b = binding_mod.load_binding()
        problem = btf_problem()
        if problem:
            raise EngineUnavailable(self.name, problem)
        path = binding_mod.object_for(self.stem, _sha256(self.source))
        ffi, lib = b.ffi, b.lib
        b.take_log()
        obj = lib.bpf_object__open_file(path.encode(), ffi.NULL)
        if obj == ffi.NULL:
            raise EngineError(self.name, f"cannot open {path}: {os.strerror(ffi.errno)}")
        self._obj = obj
        try:
            self._configure()
            rc = lib.bpf_object__load(obj)
            if rc < 0:
                log = b.take_log().strip()
                if -rc in (1, 13):  # EPERM, EACCES
                    raise EngineUnavailable(self.name, f"the kernel refused {self.stem}: "
                                            f"{os.strerror(-rc)}", fix="run as root")
                raise ScriptCompileError(self.name, f"loading failed ({os.strerror(-rc)}): "
                                         + _tail(log), self.script_name)
            self._open_maps()
            self._attach()
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - t0
        log = LOG.debug if self.trial else LOG.info
        log("libbpf engine: %s attached (%s) after %.3f s", self.script_name,
            ", ".join(self.loaded_programs), self.ready_after)

    def _configure(self):
        ffi, lib = self._b.ffi, self._b.lib
        obj = self._obj
        for name in (*self.contract, *SLOT_MAPS):
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m == ffi.NULL:
                raise ScriptCompileError(self.name, f"the object has no map {name} (declared "
                                         "by the Contract or st_common.bpf.h)",
                                         self.script_name)
            lib.bpf_map__set_max_entries(m, self.opts["max_zones"])
        for name in PENDING_MAPS:
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m != ffi.NULL:
                lib.bpf_map__set_max_entries(m, self.opts["max_pending"])
        if self.stem == "runqueue.bpf":
            self._configure_runqueue()

    def _configure_runqueue(self):
        """Design 1 (sched_info) where this kernel's BTF has task->sched_info.run_delay
        -- the same test as the program's bpf_core_field_exists -- else design 2."""
        ffi, lib = self._b.ffi, self._b.lib
        wanted = self.opts["runq_design"]
        btf = lib.btf__load_vmlinux_btf()
        has = btf != ffi.NULL and lib.st_btf_has_member(btf, b"task_struct", b"sched_info") \
            and lib.st_btf_has_member(btf, b"sched_info", b"run_delay")
        if btf != ffi.NULL:
            lib.btf__free(btf)
        if wanted == "sched_info" and not has:
            raise EngineUnavailable(self.name, "runq_design=sched_info: this kernel has no "
                                    "task->sched_info.run_delay (CONFIG_SCHED_INFO)")
        self.design = "sched_info" if has and wanted != "wakeup_stamp" else "wakeup_stamp"
        stamps = self.design == "wakeup_stamp"
        for names, load in ((STAMP_PROGRAMS, stamps), (SCHED_INFO_PROGRAMS, not stamps)):
            for name in names:
                prog = lib.bpf_object__find_program_by_name(self._obj, name.encode())
                lib.bpf_program__set_autoload(prog, load)
        rodata = lib.bpf_object__find_map_by_name(self._obj, b".rodata")
        size = ffi.new("size_t *")
        initial = lib.bpf_map__initial_value(rodata, size)
        data = bytearray(ffi.buffer(initial, size[0]))
        # struct st_config: u64 start_ns (runqueue.bpf.c)
        data[0:8] = time.monotonic_ns().to_bytes(8, "little")
        lib.bpf_map__set_initial_value(rodata, bytes(data), len(data))

    def _attach(self):
        ffi, lib = self._b.ffi, self._b.lib
        prog = lib.bpf_object__next_program(self._obj, ffi.NULL)
        while prog != ffi.NULL:
            name = ffi.string(lib.bpf_program__name(prog)).decode()
            if lib.bpf_program__autoload(prog):
                link = lib.bpf_program__attach(prog)
                if link == ffi.NULL:
                    raise ProbeNotFound(self.name, f"cannot attach {name}: "
                                        f"{os.strerror(ffi.errno)} {_tail(self._b.take_log())}",
                                        self.script_name)
                self._links.append(link)
                self.loaded_programs.append(name)
            prog = lib.bpf_object__next_program(self._obj, prog)

    def _open_maps(self):
        """Map the zone arrays and fill st_free, before any program runs."""
        ffi, lib = self._b.ffi, self._b.lib
        try:
            self._zones = ZoneSlots(self._b, self._obj, list(self.contract))
        except EngineError as exc:
            raise ScriptCompileError(self.name, exc.engine_message, self.script_name) from None
        for name, c in self.contract.items():
            width = self._zones.maps[name].width
            want = HIST_WORDS if c.action == "llquantize" else 1
            if width != want:
                raise ScriptCompileError(self.name, f"map {name} holds {width} u64, "
                                         f"its contract ({c.action}) needs {want}",
                                         self.script_name)
        self._zones.fill_free()
        self._stats_map = lib.bpf_object__find_map_by_name(self._obj, b"st_stats")
        if self._stats_map == ffi.NULL:
            raise ScriptCompileError(self.name, "the object has no st_stats map",
                                     self.script_name)

    def is_alive(self):
        return self._obj is not None and not self._stopped

    def stop(self):
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            lib = self._b.lib if self._b else None
            for link in self._links:
                lib.bpf_link__destroy(link)
            self._links = []
            if self._zones is not None:
                self._zones.close()
            if self._obj is not None:
                lib.bpf_object__close(self._obj)
            if self._cgroups is not None:
                self._cgroups.close()

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self):
        with self._lock:
            if not self.is_alive():
                raise EngineError(self.name, "snapshot() of an engine not running")
            interval = self.opts["reclaim_interval"]
            if time.monotonic() - self._last_reclaim >= interval:
                self._reclaim()
            # thousands of short-lived, acyclic tuples: the cyclic collector
            # would rescan the cached histograms many times over (as in reduce)
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                rows = self._zones.read()
            finally:
                if was_enabled:
                    gc.enable()
            aggregations = {}
            for name, zone_rows in rows.items():
                retired = self._retired.get(name)
                if retired:
                    for key, old in retired.items():
                        now = zone_rows.get(key)
                        zone_rows[key] = old if now is None else _plus(now, old)
                aggregations[name] = Aggregation(name, self.contract[name].action, zone_rows)
            health = self._health()
        return Snapshot(self.name, aggregations, health=health)

    def _reclaim(self):
        """Give the slots of dead cgroups back, keeping their values."""
        self._last_reclaim = time.monotonic()
        for cg, late in self._zones.return_held():
            self._keep(cg, late)
        if self._cgroups is None:
            try:
                self._cgroups = CgroupIds()
            except (TelemetryError, OSError) as exc:
                # no cgroup-v2 mount to ask: keep every zone (max_zones still holds)
                LOG.warning("libbpf engine: dead cgroups are not reclaimed: %s", exc)
                self.opts["reclaim_interval"] = float("inf")
                return
        self._zones.read()  # zones that appeared since the last snapshot
        for slot, cg in list(self._zones.zones.items()):
            if self._cgroups.alive(cg):
                continue
            last = self._zones.release(slot)
            self.reclaimed += 1
            self._keep(cg, last)
            LOG.debug("libbpf engine: %s: cgroup %s is gone, its slot reclaimed",
                      self.script_name, cg)

    def _keep(self, cg, values):
        row = (cg,)
        for name, value in values.items():
            keep = self._retired.setdefault(name, {})
            keep[row] = value if row not in keep else _plus(keep[row], value)

    def forget(self, first_keys):
        """Drop every row of the cgroups ``first_keys`` (zones that are gone,
        their last values delivered by the caller): their kernel slots and
        the values kept of cgroups reclaimed before.  Without it the
        values kept by :meth:`_reclaim` would grow with every cgroup ever
        seen.  The number of rows dropped."""
        ids = {k for k in first_keys if isinstance(k, int)}
        dropped = 0
        with self._lock:
            if not self.is_alive():
                return None
            self._zones.read()
            slots = {cg: slot for slot, cg in self._zones.zones.items()}
            for cg in ids:
                slot = slots.get(cg)
                if slot is not None:
                    dropped += len(self._zones.release(slot, keep_late=False))
                self._zones.forget_late(cg)
                for retired in self._retired.values():
                    if retired.pop((cg,), None) is not None:
                        dropped += 1
        return dropped

    def kernel_keys(self, name):
        """The cgroup ids with a value in the kernel map of aggregation ``name`` now."""
        with self._lock:
            return self._zones.kernel_keys(name)

    def health(self):
        with self._lock:
            if not self.is_alive():
                return EngineHealth()
            return self._health()

    def _health(self):
        counters = {"drops": {}, "errors": {}}
        for slot, n in enumerate(percpu_sums(self._b, self._stats_map)):
            if n and slot in STAT_SLOTS:
                family, kind = STAT_SLOTS[slot]
                counters[family][kind] = n
        return EngineHealth(drops=counters["drops"], errors=counters["errors"], restarts=0)


def _plus(a, b):
    """Two cumulative values of one zone added up (ints or Histograms)."""
    return a + b if isinstance(a, int) else a.plus(b)


def _sha256(text):
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tail(text, limit=2000):
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
