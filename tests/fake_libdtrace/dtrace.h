/*
 * A fake libdtrace header with the illumos ABI (SmartOS, illumos, FreeBSD,
 * macOS), written from the layout facts in shared/reference/libdtrace.md
 * section 3.  Only what smartos-telemetry's binding uses is declared.  The
 * static asserts pin the LP64 offsets the reference gives, so a wrong
 * transcription fails to compile instead of testing the wrong ABI.
 */
#ifndef FAKE_DTRACE_H
#define FAKE_DTRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define DTRACE_VERSION 3
#define DTRACE_C_ZDEFS 0x0004
#define DTRACE_C_CPP 0x0010

#define DTRACE_STATUS_ERROR -1
#define DTRACE_STATUS_NONE 0
#define DTRACE_STATUS_OKAY 1
#define DTRACE_STATUS_EXITED 2
#define DTRACE_STATUS_FILLED 3
#define DTRACE_STATUS_STOPPED 4

#define DTRACE_CONSUME_ERROR -1
#define DTRACE_CONSUME_THIS 0
#define DTRACE_CONSUME_NEXT 1
#define DTRACE_CONSUME_ABORT 2

#define DTRACE_AGGWALK_ERROR -1
#define DTRACE_AGGWALK_NEXT 0
#define DTRACE_AGGWALK_ABORT 1
#define DTRACE_AGGWALK_CLEAR 2
#define DTRACE_AGGWALK_NORMALIZE 3
#define DTRACE_AGGWALK_DENORMALIZE 4
#define DTRACE_AGGWALK_REMOVE 5

#define DTRACE_HANDLE_ABORT -1
#define DTRACE_HANDLE_OK 0

#define DTRACEACT_DIFEXPR 1
#define DTRACEACT_EXIT 2
#define DTRACEACT_PRINTF 3
#define DTRACEACT_PRINTA 4
#define DTRACEACT_USTACK 0x0101
#define DTRACEACT_USYM 0x0103
#define DTRACEACT_UMOD 0x0104
#define DTRACEACT_UADDR 0x0105
#define DTRACEACT_STACK 0x0401
#define DTRACEACT_SYM 0x0402
#define DTRACEACT_MOD 0x0403
#define DTRACEACT_AGGREGATION 0x0700
#define DTRACEAGG_COUNT (DTRACEACT_AGGREGATION + 1)
#define DTRACEAGG_MIN (DTRACEACT_AGGREGATION + 2)
#define DTRACEAGG_MAX (DTRACEACT_AGGREGATION + 3)
#define DTRACEAGG_AVG (DTRACEACT_AGGREGATION + 4)
#define DTRACEAGG_SUM (DTRACEACT_AGGREGATION + 5)
#define DTRACEAGG_STDDEV (DTRACEACT_AGGREGATION + 6)
#define DTRACEAGG_QUANTIZE (DTRACEACT_AGGREGATION + 7)
#define DTRACEAGG_LQUANTIZE (DTRACEACT_AGGREGATION + 8)
#define DTRACEAGG_LLQUANTIZE (DTRACEACT_AGGREGATION + 9)

#define DTRACE_QUANTIZE_NBUCKETS 127
#define DTRACE_QUANTIZE_ZEROBUCKET 63

typedef struct dtrace_hdl dtrace_hdl_t;
typedef struct dtrace_prog dtrace_prog_t;
typedef int64_t dtrace_optval_t;
typedef uint16_t dtrace_actkind_t;
typedef char *caddr_t;

typedef enum dtrace_probespec {
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
	DTRACEDROP_DBLERROR
} dtrace_dropkind_t;

typedef struct dtrace_recdesc {
	dtrace_actkind_t dtrd_action;
	uint32_t dtrd_size;
	uint32_t dtrd_offset;
	uint16_t dtrd_alignment;
	uint16_t dtrd_format;
	uint64_t dtrd_arg;
	uint64_t dtrd_uarg;
} dtrace_recdesc_t;

typedef struct dtrace_aggdesc {
	char *dtagd_name;
	int64_t dtagd_varid;
	int dtagd_flags;
	uint32_t dtagd_id;
	uint32_t dtagd_epid;
	uint32_t dtagd_size;
	int dtagd_nrecs;
	uint32_t dtagd_pad;
	dtrace_recdesc_t dtagd_rec[1];
} dtrace_aggdesc_t;

typedef struct dtrace_probedesc {
	uint32_t dtpd_id;
	char dtpd_provider[64];
	char dtpd_mod[64];
	char dtpd_func[128];
	char dtpd_name[64];
} dtrace_probedesc_t;

typedef struct dtrace_aggdata {
	dtrace_hdl_t *dtada_handle;
	dtrace_aggdesc_t *dtada_desc;
	void *dtada_edesc;
	dtrace_probedesc_t *dtada_pdesc;
	caddr_t dtada_data;
	uint64_t dtada_normal;
	size_t dtada_size;
	caddr_t dtada_delta;
	caddr_t *dtada_percpu;
	caddr_t *dtada_percpu_delta;
	int64_t dtada_total;
	uint16_t dtada_minbin;
	uint16_t dtada_maxbin;
	uint32_t dtada_flags;
} dtrace_aggdata_t;

typedef struct dtrace_probedata {
	dtrace_hdl_t *dtpda_handle;
	void *dtpda_edesc;
	dtrace_probedesc_t *dtpda_pdesc;
	int dtpda_cpu;
	caddr_t dtpda_data;
	int dtpda_flow;
	const char *dtpda_prefix;
	int dtpda_indent;
} dtrace_probedata_t;

typedef struct dtrace_errdata {
	dtrace_hdl_t *dteda_handle;
	void *dteda_edesc;
	dtrace_probedesc_t *dteda_pdesc;
	int dteda_cpu;
	int dteda_action;
	int dteda_offset;
	int dteda_fault;
	uint64_t dteda_addr;
	const char *dteda_msg;
} dtrace_errdata_t;

typedef struct dtrace_dropdata {
	dtrace_hdl_t *dtdda_handle;
	int dtdda_cpu;
	dtrace_dropkind_t dtdda_kind;
	uint64_t dtdda_drops;
	uint64_t dtdda_total;
	const char *dtdda_msg;
} dtrace_dropdata_t;

typedef struct dtrace_bufdata {
	dtrace_hdl_t *dtbda_handle;
	const char *dtbda_buffered;
	dtrace_probedata_t *dtbda_probe;
	const dtrace_recdesc_t *dtbda_recdesc;
	const dtrace_aggdata_t *dtbda_aggdata;
	uint32_t dtbda_flags;
} dtrace_bufdata_t;

typedef struct dtrace_proginfo {
	uint32_t dpi_descattr;
	uint32_t dpi_stmtattr;
	unsigned int dpi_aggregates;
	unsigned int dpi_recgens;
	unsigned int dpi_matches;
	unsigned int dpi_speculations;
} dtrace_proginfo_t;

/* the LP64 layouts of shared/reference/libdtrace.md section 3 */
_Static_assert(sizeof(dtrace_recdesc_t) == 32, "recdesc is 32 bytes");
_Static_assert(offsetof(dtrace_recdesc_t, dtrd_arg) == 16, "dtrd_arg at 16");
_Static_assert(offsetof(dtrace_aggdesc_t, dtagd_nrecs) == 32, "dtagd_nrecs at 32");
_Static_assert(offsetof(dtrace_aggdesc_t, dtagd_rec) == 40, "dtagd_rec at 40");
_Static_assert(sizeof(dtrace_probedesc_t) == 324, "probedesc is 324 bytes");
_Static_assert(sizeof(dtrace_aggdata_t) == 96, "aggdata is 96 bytes");
_Static_assert(offsetof(dtrace_aggdata_t, dtada_data) == 32, "dtada_data at 32");
_Static_assert(offsetof(dtrace_aggdata_t, dtada_normal) == 40, "dtada_normal at 40");
_Static_assert(offsetof(dtrace_aggdata_t, dtada_percpu) == 64, "dtada_percpu at 64");
_Static_assert(sizeof(dtrace_bufdata_t) == 48, "bufdata is 48 bytes");
_Static_assert(sizeof(dtrace_errdata_t) == 56, "errdata is 56 bytes");
_Static_assert(sizeof(dtrace_dropdata_t) == 40, "dropdata is 40 bytes");

typedef int dtrace_consume_probe_f(const dtrace_probedata_t *, void *);
typedef int dtrace_consume_rec_f(const dtrace_probedata_t *, const dtrace_recdesc_t *, void *);
typedef int dtrace_handle_err_f(const dtrace_errdata_t *, void *);
typedef int dtrace_handle_drop_f(const dtrace_dropdata_t *, void *);
typedef int dtrace_handle_buffered_f(const dtrace_bufdata_t *, void *);
typedef int dtrace_aggregate_f(const dtrace_aggdata_t *, void *);

extern const char *const _dtrace_version;

extern dtrace_hdl_t *dtrace_open(int, int, int *);
extern void dtrace_close(dtrace_hdl_t *);
extern int dtrace_errno(dtrace_hdl_t *);
extern const char *dtrace_errmsg(dtrace_hdl_t *, int);
extern const char *dtrace_faultstr(dtrace_hdl_t *, int);
extern int dtrace_setopt(dtrace_hdl_t *, const char *, const char *);
extern int dtrace_getopt(dtrace_hdl_t *, const char *, dtrace_optval_t *);
extern dtrace_prog_t *dtrace_program_strcompile(dtrace_hdl_t *, const char *,
    dtrace_probespec_t, unsigned int, int, char *const []);
extern dtrace_prog_t *dtrace_program_fcompile(dtrace_hdl_t *, FILE *,
    unsigned int, int, char *const []);
extern int dtrace_program_exec(dtrace_hdl_t *, dtrace_prog_t *, dtrace_proginfo_t *);
extern int dtrace_go(dtrace_hdl_t *);
extern int dtrace_stop(dtrace_hdl_t *);
extern void dtrace_sleep(dtrace_hdl_t *);
extern int dtrace_status(dtrace_hdl_t *);
extern dtrace_workstatus_t dtrace_work(dtrace_hdl_t *, FILE *, dtrace_consume_probe_f *,
    dtrace_consume_rec_f *, void *);
extern int dtrace_handle_err(dtrace_hdl_t *, dtrace_handle_err_f *, void *);
extern int dtrace_handle_drop(dtrace_hdl_t *, dtrace_handle_drop_f *, void *);
extern int dtrace_handle_buffered(dtrace_hdl_t *, dtrace_handle_buffered_f *, void *);
extern int dtrace_aggregate_snap(dtrace_hdl_t *);
extern int dtrace_aggregate_walk(dtrace_hdl_t *, dtrace_aggregate_f *, void *);
extern int dtrace_addr2str(dtrace_hdl_t *, uint64_t, char *, int);
extern int dtrace_uaddr2str(dtrace_hdl_t *, pid_t, uint64_t, char *, int);

#endif
