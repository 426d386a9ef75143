"""Build the cffi (API mode) binding to libdtrace against the platform's <dtrace.h>.

Two ABI families, chosen from the header itself (no hand-written offsets:
the C compiler lays out every struct from the real header):

* ``illumos`` -- SmartOS, illumos, FreeBSD, macOS: ``dtrace_aggdesc_t`` has
  an inline ``dtagd_rec[]`` array holding the variable id, the keys and the
  value; ``dtrace_aggdata_t`` carries ``dtada_normal``.
* ``oracle`` -- Oracle DTrace for Linux 2.x: ``dtrace_aggdesc_t`` points to
  separate key (``dtagd_krecs``) and data (``dtagd_drecs``) record arrays and
  carries ``dtagd_sig`` and ``dtagd_normal``; ``dtrace_init()`` is required
  and ``dtrace_go()`` takes flags.

Used three ways: by setup.py (``cffi_modules``) when a header is found; by
the tests, which build the binding against a fake illumos libdtrace; and by
hand: ``python build_binding.py [--include DIR] [--libdir DIR] [--out DIR]``.

This file must import without cffi installed (setup.py imports it to find
the header), so cffi is imported only when a builder is made.
"""

import os
import sys

MODULE_NAME = "smartos_telemetry.engines.dtrace._libdtrace"

#: where <dtrace.h> is looked for, besides $DTRACE_INCLUDE_DIR
DEFAULT_INCLUDE_DIRS = ("/usr/include", "/usr/local/include")

# ---------------------------------------------------------------------------
# Declarations shared by both families.  "..." lets the compiler fill in the
# real layout and values; only the fields we read are named.
COMMON_CDEF = """
typedef struct dtrace_hdl dtrace_hdl_t;
typedef struct dtrace_prog dtrace_prog_t;
typedef int... dtrace_optval_t;
typedef int... dtrace_actkind_t;
typedef int... pid_t;

#define DTRACE_VERSION ...
#define DTRACE_C_ZDEFS ...
#define DTRACE_C_CPP ...

#define DTRACE_STATUS_NONE ...
#define DTRACE_STATUS_OKAY ...
#define DTRACE_STATUS_EXITED ...
#define DTRACE_STATUS_FILLED ...
#define DTRACE_STATUS_STOPPED ...

#define DTRACE_CONSUME_ERROR ...
#define DTRACE_CONSUME_THIS ...
#define DTRACE_CONSUME_NEXT ...
#define DTRACE_CONSUME_ABORT ...

#define DTRACE_AGGWALK_ERROR ...
#define DTRACE_AGGWALK_NEXT ...
#define DTRACE_AGGWALK_ABORT ...

#define DTRACE_HANDLE_OK ...
#define DTRACE_HANDLE_ABORT ...

#define DTRACEACT_DIFEXPR ...
#define DTRACEACT_EXIT ...
#define DTRACEACT_PRINTF ...
#define DTRACEACT_PRINTA ...
#define DTRACEACT_USTACK ...
#define DTRACEACT_USYM ...
#define DTRACEACT_UMOD ...
#define DTRACEACT_UADDR ...
#define DTRACEACT_STACK ...
#define DTRACEACT_SYM ...
#define DTRACEACT_MOD ...
#define DTRACEACT_AGGREGATION ...

#define DTRACE_QUANTIZE_NBUCKETS ...
#define DTRACE_QUANTIZE_ZEROBUCKET ...

typedef enum {
    DTRACE_PROBESPEC_NONE = -1,
    DTRACE_PROBESPEC_PROVIDER = 0,
    DTRACE_PROBESPEC_MOD,
    DTRACE_PROBESPEC_FUNC,
    DTRACE_PROBESPEC_NAME
} dtrace_probespec_t;

typedef enum {
    DTRACE_WORKSTATUS_ERROR = -1,
    DTRACE_WORKSTATUS_OKAY,
    DTRACE_WORKSTATUS_DONE
} dtrace_workstatus_t;

typedef enum {
    DTRACEDROP_PRINCIPAL,
    DTRACEDROP_AGGREGATION,
    DTRACEDROP_DYNAMIC,
    DTRACEDROP_DYNRINSE,
    DTRACEDROP_DYNDIRTY,
    DTRACEDROP_SPEC,
    DTRACEDROP_SPECBUSY,
    DTRACEDROP_SPECUNAVAIL,
    DTRACEDROP_STKSTROVERFLOW,
    DTRACEDROP_DBLERROR,
    ...
} dtrace_dropkind_t;

typedef struct dtrace_recdesc {
    dtrace_actkind_t dtrd_action;
    uint32_t dtrd_size;
    uint32_t dtrd_offset;
    uint16_t dtrd_alignment;
    uint64_t dtrd_arg;
    ...;
} dtrace_recdesc_t;

typedef struct dtrace_proginfo {
    unsigned int dpi_aggregates;
    unsigned int dpi_recgens;
    unsigned int dpi_matches;
    ...;
} dtrace_proginfo_t;

typedef struct dtrace_probedata {
    dtrace_hdl_t *dtpda_handle;
    ...;
} dtrace_probedata_t;

typedef struct dtrace_errdata {
    dtrace_hdl_t *dteda_handle;
    int dteda_action;
    int dteda_offset;
    int dteda_fault;
    uint64_t dteda_addr;
    const char *dteda_msg;
    ...;
} dtrace_errdata_t;

typedef struct dtrace_dropdata {
    dtrace_hdl_t *dtdda_handle;
    dtrace_dropkind_t dtdda_kind;
    uint64_t dtdda_drops;
    uint64_t dtdda_total;
    const char *dtdda_msg;
    ...;
} dtrace_dropdata_t;

typedef struct dtrace_bufdata {
    dtrace_hdl_t *dtbda_handle;
    const char *dtbda_buffered;
    uint32_t dtbda_flags;
    ...;
} dtrace_bufdata_t;

typedef struct dtrace_aggdata dtrace_aggdata_t;

dtrace_hdl_t *dtrace_open(int version, int flags, int *errp);
void dtrace_close(dtrace_hdl_t *dtp);
int dtrace_errno(dtrace_hdl_t *dtp);
const char *dtrace_errmsg(dtrace_hdl_t *dtp, int error);
const char *dtrace_faultstr(dtrace_hdl_t *dtp, int fault);
const char *st_dtrace_version(void);
int dtrace_setopt(dtrace_hdl_t *dtp, const char *opt, const char *val);
int dtrace_getopt(dtrace_hdl_t *dtp, const char *opt, dtrace_optval_t *val);

dtrace_prog_t *dtrace_program_strcompile(dtrace_hdl_t *dtp, const char *s,
    dtrace_probespec_t spec, unsigned int cflags, int argc, char *const argv[]);
dtrace_prog_t *dtrace_program_fcompile(dtrace_hdl_t *dtp, FILE *fp,
    unsigned int cflags, int argc, char *const argv[]);
int dtrace_program_exec(dtrace_hdl_t *dtp, dtrace_prog_t *pgp,
    dtrace_proginfo_t *pip);

int dtrace_stop(dtrace_hdl_t *dtp);

/* a program that failed to compile from a string is compiled once more
   from a temporary file: only then do libdtrace's messages carry its line */
FILE *tmpfile(void);
size_t fwrite(const void *ptr, size_t size, size_t nmemb, FILE *fp);
void rewind(FILE *fp);
int fclose(FILE *fp);

/* printf output: Oracle's dtrace_work never flushes buffered output to the
   buffered-output handler, so output goes to an in-memory FILE instead */
FILE *open_memstream(char **ptr, size_t *sizeloc);
int fflush(FILE *fp);
void free(void *ptr);
int dtrace_status(dtrace_hdl_t *dtp);
dtrace_workstatus_t dtrace_work(dtrace_hdl_t *dtp, FILE *fp,
    int (*pfunc)(const dtrace_probedata_t *, void *),
    int (*rfunc)(const dtrace_probedata_t *, const dtrace_recdesc_t *, void *),
    void *arg);

int dtrace_handle_err(dtrace_hdl_t *dtp,
    int (*hdlr)(const dtrace_errdata_t *, void *), void *arg);
int dtrace_handle_drop(dtrace_hdl_t *dtp,
    int (*hdlr)(const dtrace_dropdata_t *, void *), void *arg);
int dtrace_handle_buffered(dtrace_hdl_t *dtp,
    int (*hdlr)(const dtrace_bufdata_t *, void *), void *arg);

int dtrace_aggregate_snap(dtrace_hdl_t *dtp);
int dtrace_aggregate_walk(dtrace_hdl_t *dtp,
    int (*func)(const dtrace_aggdata_t *, void *), void *arg);

int dtrace_addr2str(dtrace_hdl_t *dtp, uint64_t addr, char *str, int nbytes);
int dtrace_uaddr2str(dtrace_hdl_t *dtp, pid_t pid, uint64_t addr, char *str,
    int nbytes);

extern "Python" int st_walk_cb(const dtrace_aggdata_t *, void *);
extern "Python" int st_err_cb(const dtrace_errdata_t *, void *);
extern "Python" int st_drop_cb(const dtrace_dropdata_t *, void *);
extern "Python" int st_buffered_cb(const dtrace_bufdata_t *, void *);
extern "Python" int st_probe_cb(const dtrace_probedata_t *, void *);
extern "Python" int st_rec_cb(const dtrace_probedata_t *, const dtrace_recdesc_t *,
    void *);

/* which family this binding was built for: 1 = Oracle, 0 = illumos */
#define ST_ABI_ORACLE ...
"""

ILLUMOS_CDEF = """
#define DTRACEAGG_COUNT ...
#define DTRACEAGG_MIN ...
#define DTRACEAGG_MAX ...
#define DTRACEAGG_AVG ...
#define DTRACEAGG_SUM ...
#define DTRACEAGG_STDDEV ...
#define DTRACEAGG_QUANTIZE ...
#define DTRACEAGG_LQUANTIZE ...
#define DTRACEAGG_LLQUANTIZE ...

typedef struct dtrace_aggdesc {
    char *dtagd_name;
    int dtagd_flags;
    uint32_t dtagd_size;
    int dtagd_nrecs;
    dtrace_recdesc_t dtagd_rec[1];
    ...;
} dtrace_aggdesc_t;

struct dtrace_aggdata {
    dtrace_hdl_t *dtada_handle;
    dtrace_aggdesc_t *dtada_desc;
    char *dtada_data;
    uint64_t dtada_normal;
    size_t dtada_size;
    ...;
};

int dtrace_go(dtrace_hdl_t *dtp);
void dtrace_sleep(dtrace_hdl_t *dtp);
"""

ORACLE_CDEF = """
typedef struct dtrace_aggdesc {
    char *dtagd_name;
    int dtagd_flags;
    uint64_t dtagd_sig;
    uint64_t dtagd_normal;
    uint32_t dtagd_ksize;
    uint32_t dtagd_dsize;
    unsigned int dtagd_nkrecs;
    dtrace_recdesc_t *dtagd_krecs;
    dtrace_recdesc_t *dtagd_drecs;
    ...;
} dtrace_aggdesc_t;

struct dtrace_aggdata {
    dtrace_hdl_t *dtada_hdl;
    dtrace_aggdesc_t *dtada_desc;
    char *dtada_key;
    char *dtada_data;
    ...;
};

int dtrace_init(dtrace_hdl_t *dtp);
int dtrace_go(dtrace_hdl_t *dtp, unsigned int cflags);
"""

SOURCE_TEMPLATE = """
#include <sys/types.h>
#include <sys/param.h>
#include <stdio.h>
#include <dtrace.h>
#define ST_ABI_ORACLE %d
/* dtrace.h declares _dtrace_version (a pointer on Oracle, an array on some
   illumos releases); this works for both */
static const char *st_dtrace_version(void) { return _dtrace_version; }
"""


def include_dirs():
    """Directories searched for <dtrace.h>, most specific first."""
    dirs = []
    env = os.environ.get("DTRACE_INCLUDE_DIR")
    if env:
        dirs.extend(env.split(os.pathsep))
    dirs.extend(DEFAULT_INCLUDE_DIRS)
    return dirs


def find_header(dirs=None):
    """Path of the platform's libdtrace <dtrace.h>, or None.

    A header that declares ``dtrace_open`` counts; the kernel's
    <sys/dtrace.h> alone does not.
    """
    for d in dirs or include_dirs():
        path = os.path.join(d, "dtrace.h")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if "dtrace_open" in f.read():
                    return path
        except OSError:
            continue
    return None


def abi_family(header_path):
    """``oracle`` or ``illumos``, read from the header and the ones it includes.

    Oracle's ``dtrace_aggdesc_t`` lives in <dtrace/metadesc.h> and has
    ``dtagd_krecs``; illumos' has the inline ``dtagd_rec[]``.
    """
    base = os.path.dirname(header_path)
    candidates = [header_path, os.path.join(base, "dtrace", "metadesc.h"),
                  os.path.join(base, "sys", "dtrace.h")]
    text = ""
    for path in candidates:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text += f.read()
        except OSError:
            pass
    if "dtagd_krecs" in text:
        return "oracle"
    if "dtagd_rec" in text:
        return "illumos"
    raise RuntimeError(
        f"{header_path}: neither dtagd_krecs (Oracle) nor dtagd_rec (illumos) found; "
        "unsupported libdtrace ABI"
    )


def make_ffibuilder(module_name=MODULE_NAME, include=None, libdirs=None,
                    libraries=("dtrace",)):
    """A cffi FFI builder for the libdtrace found in ``include`` dirs."""
    import cffi

    dirs = list(include or include_dirs())
    header = find_header(dirs)
    if header is None:
        raise RuntimeError(f"no <dtrace.h> declaring dtrace_open in {', '.join(dirs)}")
    family = abi_family(header)
    # Debian's libdtrace2-dev includes <sys/ctf-api.h>, binutils-dev ships
    # <ctf-api.h>; a shim directory provided by the caller (or
    # /usr/local/include) fixes that, see tools/dtrace-sandbox.
    builder = cffi.FFI()
    builder.cdef(COMMON_CDEF + (ORACLE_CDEF if family == "oracle" else ILLUMOS_CDEF))
    builder.set_source(
        module_name,
        SOURCE_TEMPLATE % (family == "oracle"),
        # gcc searches /usr/include last whatever -I says; the header's own
        # directory must come first so <dtrace.h> is that header, not
        # <dtrace/dtrace.h>
        include_dirs=[d for d in dict.fromkeys([os.path.dirname(header), *dirs])
                      if d != "/usr/include"],
        library_dirs=list(libdirs or []),
        runtime_library_dirs=list(libdirs or []),
        libraries=list(libraries),
        # a version-specific file name, so an interpreter that cannot load
        # it (another Python, another root) never finds it
        py_limited_api=False,
    )
    return builder


try:
    import cffi  # noqa: F401

    ffibuilder = make_ffibuilder() if find_header() else None
except ImportError:
    ffibuilder = None


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--include", action="append", help="directory holding dtrace.h")
    parser.add_argument("--libdir", action="append", help="directory holding libdtrace.so")
    parser.add_argument("--module", default=MODULE_NAME, help="module name to build")
    parser.add_argument("--out", default=".", help="where the built module goes")
    args = parser.parse_args(argv)
    builder = make_ffibuilder(args.module, args.include, args.libdir)
    print(builder.compile(tmpdir=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
