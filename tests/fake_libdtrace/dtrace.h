/*
 * A fake <dtrace.h> holding smartos-telemetry's binding to illumos: it
 * declares, for everything the binding uses, what illumos' headers declare
 * and nothing Oracle adds (no DTRACE_STATUS_ERROR: illumos' dtrace_status
 * returns a bare -1).  Each block names the illumos-gate file and line it
 * transcribes; "dtrace.h" is usr/src/lib/libdtrace/common/dtrace.h at
 * 333026562aa4, "sys/dtrace.h" usr/src/uts/common/sys/dtrace.h at
 * 9d7cab140913 (lines as counted in those versions).  The real <dtrace.h>
 * gets the kernel's definitions by including <sys/dtrace.h>, and a few
 * basic types from <sys/types.h> and <sys/processor.h>, which Linux lacks;
 * those are transcribed here too.
 * The static asserts pin the LP64 layouts, so a wrong transcription fails
 * to compile instead of testing the wrong ABI.
 */
#ifndef FAKE_DTRACE_H
#define	FAKE_DTRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* illumos usr/src/uts/common/sys/types.h (uint_t, caddr_t) and
   sys/processor.h (processorid_t); lines not transcribed */
typedef unsigned int uint_t;
typedef char *caddr_t;
typedef int processorid_t;
/* illumos usr/src/uts/common/sys/select.h (NBBY, bits per byte) */
#ifndef NBBY
#define	NBBY	8
#endif

/* ---- kernel interfaces: sys/dtrace.h -------------------------------- */

/* sys/dtrace.h:81-86, 89-95 */
typedef uint32_t dtrace_id_t;
typedef uint32_t dtrace_epid_t;
typedef uint32_t dtrace_aggid_t;
typedef int64_t dtrace_aggvarid_t;
typedef uint16_t dtrace_actkind_t;
typedef int64_t dtrace_optval_t;

typedef enum dtrace_probespec {
	DTRACE_PROBESPEC_NONE = -1,
	DTRACE_PROBESPEC_PROVIDER = 0,
	DTRACE_PROBESPEC_MOD,
	DTRACE_PROBESPEC_FUNC,
	DTRACE_PROBESPEC_NAME
} dtrace_probespec_t;

/* sys/dtrace.h:399-403, 408-413, 423-426 */
#define	DTRACEACT_NONE			0
#define	DTRACEACT_DIFEXPR		1
#define	DTRACEACT_EXIT			2
#define	DTRACEACT_PRINTF		3
#define	DTRACEACT_PRINTA		4

#define	DTRACEACT_PROC			0x0100
#define	DTRACEACT_USTACK		(DTRACEACT_PROC + 1)
#define	DTRACEACT_JSTACK		(DTRACEACT_PROC + 2)
#define	DTRACEACT_USYM			(DTRACEACT_PROC + 3)
#define	DTRACEACT_UMOD			(DTRACEACT_PROC + 4)
#define	DTRACEACT_UADDR			(DTRACEACT_PROC + 5)

#define	DTRACEACT_KERNEL		0x0400
#define	DTRACEACT_STACK			(DTRACEACT_KERNEL + 1)
#define	DTRACEACT_SYM			(DTRACEACT_KERNEL + 2)
#define	DTRACEACT_MOD			(DTRACEACT_KERNEL + 3)

/* sys/dtrace.h:463-472, 477-478, 480, 482-486, 488-505, 507-530 */
#define	DTRACEACT_AGGREGATION		0x0700
#define	DTRACEAGG_COUNT			(DTRACEACT_AGGREGATION + 1)
#define	DTRACEAGG_MIN			(DTRACEACT_AGGREGATION + 2)
#define	DTRACEAGG_MAX			(DTRACEACT_AGGREGATION + 3)
#define	DTRACEAGG_AVG			(DTRACEACT_AGGREGATION + 4)
#define	DTRACEAGG_SUM			(DTRACEACT_AGGREGATION + 5)
#define	DTRACEAGG_STDDEV		(DTRACEACT_AGGREGATION + 6)
#define	DTRACEAGG_QUANTIZE		(DTRACEACT_AGGREGATION + 7)
#define	DTRACEAGG_LQUANTIZE		(DTRACEACT_AGGREGATION + 8)
#define	DTRACEAGG_LLQUANTIZE		(DTRACEACT_AGGREGATION + 9)

#define	DTRACE_QUANTIZE_NBUCKETS	\
	(((sizeof (uint64_t) * NBBY) - 1) * 2 + 1)

#define	DTRACE_QUANTIZE_ZEROBUCKET	((sizeof (uint64_t) * NBBY) - 1)

#define	DTRACE_QUANTIZE_BUCKETVAL(buck)					\
	(int64_t)((buck) < DTRACE_QUANTIZE_ZEROBUCKET ?			\
	-(1LL << (DTRACE_QUANTIZE_ZEROBUCKET - 1 - (buck))) :		\
	(buck) == DTRACE_QUANTIZE_ZEROBUCKET ? 0 :			\
	1LL << ((buck) - DTRACE_QUANTIZE_ZEROBUCKET - 1))

#define	DTRACE_LQUANTIZE_STEPSHIFT		48
#define	DTRACE_LQUANTIZE_STEPMASK		((uint64_t)UINT16_MAX << 48)
#define	DTRACE_LQUANTIZE_LEVELSHIFT		32
#define	DTRACE_LQUANTIZE_LEVELMASK		((uint64_t)UINT16_MAX << 32)
#define	DTRACE_LQUANTIZE_BASESHIFT		0
#define	DTRACE_LQUANTIZE_BASEMASK		UINT32_MAX

#define	DTRACE_LQUANTIZE_STEP(x)		\
	(uint16_t)(((x) & DTRACE_LQUANTIZE_STEPMASK) >> \
	DTRACE_LQUANTIZE_STEPSHIFT)

#define	DTRACE_LQUANTIZE_LEVELS(x)		\
	(uint16_t)(((x) & DTRACE_LQUANTIZE_LEVELMASK) >> \
	DTRACE_LQUANTIZE_LEVELSHIFT)

#define	DTRACE_LQUANTIZE_BASE(x)		\
	(int32_t)(((x) & DTRACE_LQUANTIZE_BASEMASK) >> \
	DTRACE_LQUANTIZE_BASESHIFT)

#define	DTRACE_LLQUANTIZE_FACTORSHIFT		48
#define	DTRACE_LLQUANTIZE_FACTORMASK		((uint64_t)UINT16_MAX << 48)
#define	DTRACE_LLQUANTIZE_LOWSHIFT		32
#define	DTRACE_LLQUANTIZE_LOWMASK		((uint64_t)UINT16_MAX << 32)
#define	DTRACE_LLQUANTIZE_HIGHSHIFT		16
#define	DTRACE_LLQUANTIZE_HIGHMASK		((uint64_t)UINT16_MAX << 16)
#define	DTRACE_LLQUANTIZE_NSTEPSHIFT		0
#define	DTRACE_LLQUANTIZE_NSTEPMASK		UINT16_MAX

#define	DTRACE_LLQUANTIZE_FACTOR(x)		\
	(uint16_t)(((x) & DTRACE_LLQUANTIZE_FACTORMASK) >> \
	DTRACE_LLQUANTIZE_FACTORSHIFT)

#define	DTRACE_LLQUANTIZE_LOW(x)		\
	(uint16_t)(((x) & DTRACE_LLQUANTIZE_LOWMASK) >> \
	DTRACE_LLQUANTIZE_LOWSHIFT)

#define	DTRACE_LLQUANTIZE_HIGH(x)		\
	(uint16_t)(((x) & DTRACE_LLQUANTIZE_HIGHMASK) >> \
	DTRACE_LLQUANTIZE_HIGHSHIFT)

#define	DTRACE_LLQUANTIZE_NSTEP(x)		\
	(uint16_t)(((x) & DTRACE_LLQUANTIZE_NSTEPMASK) >> \
	DTRACE_LLQUANTIZE_NSTEPSHIFT)

/* sys/dtrace.h:887-893 */
typedef struct dtrace_probedesc {
	dtrace_id_t dtpd_id;
	char dtpd_provider[64];		/* DTRACE_PROVNAMELEN */
	char dtpd_mod[64];		/* DTRACE_MODNAMELEN */
	char dtpd_func[128];		/* DTRACE_FUNCNAMELEN */
	char dtpd_name[64];		/* DTRACE_NAMELEN */
} dtrace_probedesc_t;

/* sys/dtrace.h:940-948 */
typedef struct dtrace_recdesc {
	dtrace_actkind_t dtrd_action;
	uint32_t dtrd_size;
	uint32_t dtrd_offset;
	uint16_t dtrd_alignment;
	uint16_t dtrd_format;
	uint64_t dtrd_arg;
	uint64_t dtrd_uarg;
} dtrace_recdesc_t;

/* sys/dtrace.h:950-957 */
typedef struct dtrace_eprobedesc {
	dtrace_epid_t dtepd_epid;
	dtrace_id_t dtepd_probeid;
	uint64_t dtepd_uarg;
	uint32_t dtepd_size;
	int dtepd_nrecs;
	dtrace_recdesc_t dtepd_rec[1];
} dtrace_eprobedesc_t;

/* sys/dtrace.h:959-969; DTRACE_PTR(char, dtagd_name) is a plain pointer
   under _LP64 (sys/dtrace.h:543-545) */
typedef struct dtrace_aggdesc {
	char *dtagd_name;
	dtrace_aggvarid_t dtagd_varid;
	int dtagd_flags;
	dtrace_aggid_t dtagd_id;
	dtrace_epid_t dtagd_epid;
	uint32_t dtagd_size;
	int dtagd_nrecs;
	uint32_t dtagd_pad;
	dtrace_recdesc_t dtagd_rec[1];
} dtrace_aggdesc_t;

/* sys/dtrace.h:1032 */
#define	DTRACEOPT_UNSET		(dtrace_optval_t)-2

/* sys/dtrace.h, section "DTrace Stability Attributes" (past the lines
   transcribed above; line not counted) */
typedef uint8_t dtrace_stability_t;
typedef uint8_t dtrace_class_t;

typedef struct dtrace_attribute {
	dtrace_stability_t dtat_name;
	dtrace_stability_t dtat_data;
	dtrace_class_t dtat_class;
} dtrace_attribute_t;

/* ---- library interfaces: dtrace.h ----------------------------------- */

/* dtrace.h:55 */
#define	DTRACE_VERSION	3

/* dtrace.h:59-62 */
typedef struct dtrace_hdl dtrace_hdl_t;
typedef struct dtrace_prog dtrace_prog_t;
typedef struct dtrace_vector dtrace_vector_t;
typedef struct dtrace_aggdata dtrace_aggdata_t;

/* dtrace.h:70 */
extern dtrace_hdl_t *dtrace_open(int, int, int *);

/* dtrace.h:74-77 */
extern int dtrace_go(dtrace_hdl_t *);
extern int dtrace_stop(dtrace_hdl_t *);
extern void dtrace_sleep(dtrace_hdl_t *);
extern void dtrace_close(dtrace_hdl_t *);

/* dtrace.h:79-81 */
extern int dtrace_errno(dtrace_hdl_t *);
extern const char *dtrace_errmsg(dtrace_hdl_t *, int);
extern const char *dtrace_faultstr(dtrace_hdl_t *, int);

/* dtrace.h:84-85 */
extern int dtrace_setopt(dtrace_hdl_t *, const char *, const char *);
extern int dtrace_getopt(dtrace_hdl_t *, const char *, dtrace_optval_t *);

/* dtrace.h:100-107 */
typedef struct dtrace_proginfo {
	dtrace_attribute_t dpi_descattr;
	dtrace_attribute_t dpi_stmtattr;
	uint_t dpi_aggregates;
	uint_t dpi_recgens;
	uint_t dpi_matches;
	uint_t dpi_speculations;
} dtrace_proginfo_t;

/* dtrace.h:111, 113 */
#define	DTRACE_C_ZDEFS	0x0004
#define	DTRACE_C_CPP	0x0010

/* dtrace.h:124-125, 127-128, 130-131 */
extern dtrace_prog_t *dtrace_program_strcompile(dtrace_hdl_t *,
    const char *, dtrace_probespec_t, uint_t, int, char *const []);

extern dtrace_prog_t *dtrace_program_fcompile(dtrace_hdl_t *,
    FILE *, uint_t, int, char *const []);

extern int dtrace_program_exec(dtrace_hdl_t *, dtrace_prog_t *,
    dtrace_proginfo_t *);

/* dtrace.h:179-183 */
typedef enum {
	DTRACEFLOW_ENTRY,
	DTRACEFLOW_RETURN,
	DTRACEFLOW_NONE
} dtrace_flowkind_t;

/* dtrace.h:185-188 */
#define	DTRACE_CONSUME_ERROR		-1
#define	DTRACE_CONSUME_THIS		0
#define	DTRACE_CONSUME_NEXT		1
#define	DTRACE_CONSUME_ABORT		2

/* dtrace.h:190-199, 201-203 */
typedef struct dtrace_probedata {
	dtrace_hdl_t *dtpda_handle;
	dtrace_eprobedesc_t *dtpda_edesc;
	dtrace_probedesc_t *dtpda_pdesc;
	processorid_t dtpda_cpu;
	caddr_t dtpda_data;
	dtrace_flowkind_t dtpda_flow;
	const char *dtpda_prefix;
	int dtpda_indent;
} dtrace_probedata_t;

typedef int dtrace_consume_probe_f(const dtrace_probedata_t *, void *);
typedef int dtrace_consume_rec_f(const dtrace_probedata_t *,
    const dtrace_recdesc_t *, void *);

/* dtrace.h:208-212, 214 (and no DTRACE_STATUS_ERROR: that is Oracle's) */
#define	DTRACE_STATUS_NONE	0
#define	DTRACE_STATUS_OKAY	1
#define	DTRACE_STATUS_EXITED	2
#define	DTRACE_STATUS_FILLED	3
#define	DTRACE_STATUS_STOPPED	4

extern int dtrace_status(dtrace_hdl_t *);

/* dtrace.h:263-267, 269-270 */
typedef enum {
	DTRACE_WORKSTATUS_ERROR = -1,
	DTRACE_WORKSTATUS_OKAY,
	DTRACE_WORKSTATUS_DONE
} dtrace_workstatus_t;

extern dtrace_workstatus_t dtrace_work(dtrace_hdl_t *, FILE *,
    dtrace_consume_probe_f *, dtrace_consume_rec_f *, void *);

/* dtrace.h:275-276, 278-288, 290-291 */
#define	DTRACE_HANDLE_ABORT		-1
#define	DTRACE_HANDLE_OK		0

typedef struct dtrace_errdata {
	dtrace_hdl_t *dteda_handle;
	dtrace_eprobedesc_t *dteda_edesc;
	dtrace_probedesc_t *dteda_pdesc;
	processorid_t dteda_cpu;
	int dteda_action;
	int dteda_offset;
	int dteda_fault;
	uint64_t dteda_addr;
	const char *dteda_msg;
} dtrace_errdata_t;

typedef int dtrace_handle_err_f(const dtrace_errdata_t *, void *);
extern int dtrace_handle_err(dtrace_hdl_t *, dtrace_handle_err_f *, void *);

/* dtrace.h:293-304, 306-313, 315-316 */
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

typedef struct dtrace_dropdata {
	dtrace_hdl_t *dtdda_handle;
	processorid_t dtdda_cpu;
	dtrace_dropkind_t dtdda_kind;
	uint64_t dtdda_drops;
	uint64_t dtdda_total;
	const char *dtdda_msg;
} dtrace_dropdata_t;

typedef int dtrace_handle_drop_f(const dtrace_dropdata_t *, void *);
extern int dtrace_handle_drop(dtrace_hdl_t *, dtrace_handle_drop_f *, void *);

/* dtrace.h:326-333, 335-337 */
typedef struct dtrace_bufdata {
	dtrace_hdl_t *dtbda_handle;
	const char *dtbda_buffered;
	dtrace_probedata_t *dtbda_probe;
	const dtrace_recdesc_t *dtbda_recdesc;
	const dtrace_aggdata_t *dtbda_aggdata;
	uint32_t dtbda_flags;
} dtrace_bufdata_t;

typedef int dtrace_handle_buffered_f(const dtrace_bufdata_t *, void *);
extern int dtrace_handle_buffered(dtrace_hdl_t *,
    dtrace_handle_buffered_f *, void *);

/* dtrace.h:365-371, 373-388, 390, 397, 401 */
#define	DTRACE_AGGWALK_ERROR		-1
#define	DTRACE_AGGWALK_NEXT		0
#define	DTRACE_AGGWALK_ABORT		1
#define	DTRACE_AGGWALK_CLEAR		2
#define	DTRACE_AGGWALK_NORMALIZE	3
#define	DTRACE_AGGWALK_DENORMALIZE	4
#define	DTRACE_AGGWALK_REMOVE		5

struct dtrace_aggdata {
	dtrace_hdl_t *dtada_handle;
	dtrace_aggdesc_t *dtada_desc;
	dtrace_eprobedesc_t *dtada_edesc;
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
};

typedef int dtrace_aggregate_f(const dtrace_aggdata_t *, void *);

extern int dtrace_aggregate_snap(dtrace_hdl_t *);
extern int dtrace_aggregate_walk(dtrace_hdl_t *, dtrace_aggregate_f *, void *);

/* dtrace.h:574-575, 599 */
extern int dtrace_addr2str(dtrace_hdl_t *, uint64_t, char *, int);
extern int dtrace_uaddr2str(dtrace_hdl_t *, pid_t, uint64_t, char *, int);

extern const char *const _dtrace_version;

/* the LP64 layouts (shared/reference/illumos-verified.md) */
_Static_assert(sizeof (dtrace_recdesc_t) == 32, "recdesc is 32 bytes");
_Static_assert(offsetof(dtrace_recdesc_t, dtrd_arg) == 16, "dtrd_arg at 16");
_Static_assert(offsetof(dtrace_aggdesc_t, dtagd_nrecs) == 32, "dtagd_nrecs at 32");
_Static_assert(offsetof(dtrace_aggdesc_t, dtagd_rec) == 40, "dtagd_rec at 40");
_Static_assert(sizeof (dtrace_probedesc_t) == 324, "probedesc is 324 bytes");
_Static_assert(sizeof (dtrace_aggdata_t) == 96, "aggdata is 96 bytes");
_Static_assert(offsetof(dtrace_aggdata_t, dtada_data) == 32, "dtada_data at 32");
_Static_assert(offsetof(dtrace_aggdata_t, dtada_normal) == 40, "dtada_normal at 40");
_Static_assert(offsetof(dtrace_aggdata_t, dtada_percpu) == 64, "dtada_percpu at 64");
_Static_assert(sizeof (dtrace_proginfo_t) == 24, "proginfo is 24 bytes");
_Static_assert(offsetof(dtrace_proginfo_t, dpi_aggregates) == 8, "dpi_aggregates at 8");
_Static_assert(sizeof (dtrace_bufdata_t) == 48, "bufdata is 48 bytes");
_Static_assert(sizeof (dtrace_errdata_t) == 56, "errdata is 56 bytes");
_Static_assert(sizeof (dtrace_dropdata_t) == 40, "dropdata is 40 bytes");

#endif
