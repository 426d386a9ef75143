/*
 * A fake libdtrace with the illumos ABI, for testing smartos-telemetry's
 * illumos decoding on Linux.  It compiles nothing and traces nothing: the
 * walk hands out canned aggregations of every aggregating action, laid out
 * as illumos libdtrace lays them out (shared/reference/libdtrace.md
 * section 3): dtagd_rec[0] is the variable id, then the keys, then the value,
 * all at offsets into dtada_data; l/llquantize values begin with their
 * encoded parameter word.
 *
 * Words in the program text steer it: "syntax-error" and "no-probe" fail the
 * compile, "destructive" sets that option, "drops" makes every dtrace_work
 * report drops and a run-time error, "printf" makes it hand out buffered
 * output, "die" makes dtrace_work fail as a killed consumer does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrace.h"

const char *const _dtrace_version = "Sun D 1.13 (fake illumos libdtrace)";

struct dtrace_hdl {
	int err;
	char errmsg[256];
	char program[4096];
	dtrace_handle_err_f *err_fn;
	void *err_arg;
	dtrace_handle_drop_f *drop_fn;
	void *drop_arg;
	dtrace_handle_buffered_f *buf_fn;
	void *buf_arg;
	int going;
	int dead;
};

struct dtrace_prog {
	int unused;
};

static struct dtrace_prog the_prog;

#define MAXAGGS 16
struct fake_agg {
	dtrace_aggdesc_t *desc;
	dtrace_aggdata_t data;
	char buf[2048] __attribute__((aligned(8)));
	uint32_t next;		/* next free offset in buf */
};
static struct fake_agg aggs[MAXAGGS];
static int naggs;

static struct fake_agg *
agg_new(const char *name, int nkeys)
{
	struct fake_agg *a = &aggs[naggs];
	int nrecs = nkeys + 2;

	a->desc = calloc(1, sizeof (dtrace_aggdesc_t) + (nrecs - 1) * sizeof (dtrace_recdesc_t));
	a->desc->dtagd_name = (char *)name;
	a->desc->dtagd_varid = naggs + 1;
	a->desc->dtagd_nrecs = 0;
	memset(a->buf, 0, sizeof (a->buf));
	/* record 0: the variable id, 4 bytes */
	a->desc->dtagd_rec[0].dtrd_action = DTRACEACT_DIFEXPR;
	a->desc->dtagd_rec[0].dtrd_size = 4;
	a->desc->dtagd_rec[0].dtrd_offset = 0;
	*(uint32_t *)a->buf = naggs + 1;
	a->desc->dtagd_nrecs = 1;
	a->next = 4;
	a->data.dtada_desc = a->desc;
	a->data.dtada_data = a->buf;
	a->data.dtada_normal = 1;
	naggs++;
	return (a);
}

/* append a record of `size` bytes aligned to `align`; return where it goes */
static void *
agg_rec(struct fake_agg *a, dtrace_actkind_t action, uint32_t size, uint32_t align,
    uint64_t arg)
{
	dtrace_recdesc_t *r = &a->desc->dtagd_rec[a->desc->dtagd_nrecs++];

	a->next = (a->next + align - 1) & ~(align - 1);
	r->dtrd_action = action;
	r->dtrd_size = size;
	r->dtrd_offset = a->next;
	r->dtrd_alignment = align;
	r->dtrd_arg = arg;
	a->next += size;
	a->data.dtada_size = a->next;
	return (a->buf + r->dtrd_offset);
}

static void
build_aggregations(void)
{
	struct fake_agg *a;
	int64_t *w;

	for (int i = 0; i < naggs; i++)
		free(aggs[i].desc);
	naggs = 0;

	/* @keys[(char)-1, (short)-2, (int)-3, (long)-(1<<40), "zone-a"] = count() */
	a = agg_new("keys", 5);
	*(int8_t *)agg_rec(a, DTRACEACT_DIFEXPR, 1, 1, 0) = -1;
	*(int16_t *)agg_rec(a, DTRACEACT_DIFEXPR, 2, 2, 0) = -2;
	*(int32_t *)agg_rec(a, DTRACEACT_DIFEXPR, 4, 4, 0) = -3;
	*(int64_t *)agg_rec(a, DTRACEACT_DIFEXPR, 8, 8, 0) = -(1LL << 40);
	strcpy(agg_rec(a, DTRACEACT_DIFEXPR, 32, 1, 0), "zone-a");
	*(int64_t *)agg_rec(a, DTRACEAGG_COUNT, 8, 8, 0) = (1LL << 40) + 7;

	a = agg_new("total", 1);
	strcpy(agg_rec(a, DTRACEACT_DIFEXPR, 32, 1, 0), "big");
	*(int64_t *)agg_rec(a, DTRACEAGG_SUM, 8, 8, 0) = -(1LL << 62) - 5;

	a = agg_new("normalized", 0);
	*(int64_t *)agg_rec(a, DTRACEAGG_SUM, 8, 8, 0) = 123456;
	a->data.dtada_normal = 1000;

	a = agg_new("smallest", 0);
	*(int64_t *)agg_rec(a, DTRACEAGG_MIN, 8, 8, 0) = -42;

	a = agg_new("largest", 0);
	*(int64_t *)agg_rec(a, DTRACEAGG_MAX, 8, 8, 0) = INT64_MAX;

	a = agg_new("mean", 0);
	w = agg_rec(a, DTRACEAGG_AVG, 16, 8, 0);
	w[0] = 4;
	w[1] = 10;

	a = agg_new("spread", 0);
	w = agg_rec(a, DTRACEAGG_STDDEV, 32, 8, 0);
	w[0] = 3;
	w[1] = 6;
	((uint64_t *)w)[2] = 14;	/* 128-bit sum of squares: low word */
	((uint64_t *)w)[3] = 1;		/* high word */

	a = agg_new("pow2", 1);
	*(int32_t *)agg_rec(a, DTRACEACT_DIFEXPR, 4, 4, 0) = 7;
	w = agg_rec(a, DTRACEAGG_QUANTIZE, 8 * DTRACE_QUANTIZE_NBUCKETS, 8, 0);
	w[60] = 1;
	w[63] = 2;
	w[64] = 3;
	w[70] = 5;

	/* lquantize(v, -20, 30, 10): step 10, 5 levels, base -20 */
	a = agg_new("linear", 0);
	{
		uint64_t arg = (10ULL << 48) | (5ULL << 32) | (uint32_t)-20;
		w = agg_rec(a, DTRACEAGG_LQUANTIZE, 8 * (1 + 7), 8, arg);
		w[0] = (int64_t)arg;
		w[1 + 0] = 1;
		w[1 + 1] = 2;
		w[1 + 6] = 3;
	}

	/* llquantize(v, 10, 0, 2, 10): 1 + 9 + 9 + 9 + 1 buckets */
	a = agg_new("loglinear", 0);
	{
		uint64_t arg = (10ULL << 48) | (0ULL << 32) | (2ULL << 16) | 10;
		w = agg_rec(a, DTRACEAGG_LLQUANTIZE, 8 * (1 + 29), 8, arg);
		w[0] = (int64_t)arg;
		w[1 + 0] = 1;
		w[1 + 1] = 2;
		w[1 + 9] = 3;
		w[1 + 10] = 4;
		w[1 + 28] = 5;
	}

	/* @syms[sym(), mod(), usym(), umod()] = count() */
	a = agg_new("syms", 4);
	*(uint64_t *)agg_rec(a, DTRACEACT_SYM, 8, 8, 0) = 0x1000;
	*(uint64_t *)agg_rec(a, DTRACEACT_MOD, 8, 8, 0) = 0x2000;
	w = agg_rec(a, DTRACEACT_USYM, 16, 8, 0);
	w[0] = 42;
	w[1] = 0x3000;
	w = agg_rec(a, DTRACEACT_UMOD, 16, 8, 0);
	w[0] = 42;
	w[1] = 0x4000;
	*(int64_t *)agg_rec(a, DTRACEAGG_COUNT, 8, 8, 0) = 9;
}

dtrace_hdl_t *
dtrace_open(int version, int flags, int *errp)
{
	(void) flags;
	if (version != DTRACE_VERSION) {
		*errp = 1;
		return (NULL);
	}
	return (calloc(1, sizeof (dtrace_hdl_t)));
}

void
dtrace_close(dtrace_hdl_t *dtp)
{
	free(dtp);
}

int
dtrace_errno(dtrace_hdl_t *dtp)
{
	return (dtp->err);
}

const char *
dtrace_errmsg(dtrace_hdl_t *dtp, int err)
{
	if (dtp != NULL && err == dtp->err && dtp->errmsg[0] != '\0')
		return (dtp->errmsg);
	return ("fake libdtrace error");
}

const char *
dtrace_faultstr(dtrace_hdl_t *dtp, int fault)
{
	(void) dtp;
	return (fault == 1 ? "invalid address" : "unknown fault");
}

static int
fail(dtrace_hdl_t *dtp, const char *msg)
{
	dtp->err = 1;
	snprintf(dtp->errmsg, sizeof (dtp->errmsg), "%s", msg);
	return (-1);
}

int
dtrace_setopt(dtrace_hdl_t *dtp, const char *opt, const char *val)
{
	(void) val;
	if (strcmp(opt, "nosuchoption") == 0)
		return (fail(dtp, "Invalid option name"));
	return (0);
}

int
dtrace_getopt(dtrace_hdl_t *dtp, const char *opt, dtrace_optval_t *val)
{
	*val = -2;	/* DTRACEOPT_UNSET */
	if (strcmp(opt, "destructive") == 0 && strstr(dtp->program, "destructive"))
		*val = 0;
	return (0);
}

static dtrace_prog_t *
compile(dtrace_hdl_t *dtp)
{
	if (strstr(dtp->program, "syntax-error")) {
		fail(dtp, "line 2: syntax error near \"}\"");
		return (NULL);
	}
	if (strstr(dtp->program, "no-probe")) {
		fail(dtp, "probe description fake:::nope does not match any probes");
		return (NULL);
	}
	return (&the_prog);
}

dtrace_prog_t *
dtrace_program_strcompile(dtrace_hdl_t *dtp, const char *s, dtrace_probespec_t spec,
    unsigned int cflags, int argc, char *const argv[])
{
	(void) spec; (void) cflags; (void) argc; (void) argv;
	snprintf(dtp->program, sizeof (dtp->program), "%s", s);
	return (compile(dtp));
}

dtrace_prog_t *
dtrace_program_fcompile(dtrace_hdl_t *dtp, FILE *fp, unsigned int cflags, int argc,
    char *const argv[])
{
	size_t n = fread(dtp->program, 1, sizeof (dtp->program) - 1, fp);

	(void) cflags; (void) argc; (void) argv;
	dtp->program[n] = '\0';
	return (compile(dtp));
}

int
dtrace_program_exec(dtrace_hdl_t *dtp, dtrace_prog_t *pgp, dtrace_proginfo_t *pip)
{
	(void) dtp; (void) pgp;
	memset(pip, 0, sizeof (*pip));
	pip->dpi_matches = 1;
	pip->dpi_aggregates = MAXAGGS;
	return (0);
}

int
dtrace_go(dtrace_hdl_t *dtp)
{
	dtp->going = 1;
	build_aggregations();
	return (0);
}

int
dtrace_stop(dtrace_hdl_t *dtp)
{
	dtp->going = 0;
	return (0);
}

void
dtrace_sleep(dtrace_hdl_t *dtp)
{
	(void) dtp;
}

int
dtrace_status(dtrace_hdl_t *dtp)
{
	return (dtp->going ? DTRACE_STATUS_OKAY : DTRACE_STATUS_STOPPED);
}

dtrace_workstatus_t
dtrace_work(dtrace_hdl_t *dtp, FILE *fp, dtrace_consume_probe_f *pf,
    dtrace_consume_rec_f *rf, void *arg)
{
	(void) fp; (void) pf; (void) rf; (void) arg;
	if (strstr(dtp->program, "die")) {
		fail(dtp, "Abort due to systemic unresponsiveness");
		return (DTRACE_WORKSTATUS_ERROR);
	}
	if (strstr(dtp->program, "drops")) {
		dtrace_dropdata_t drop = { dtp, 0, DTRACEDROP_AGGREGATION, 7, 7,
		    "7 aggregation drops on CPU 0\n" };
		dtrace_errdata_t err = { dtp, NULL, NULL, 0, 0, 0, 1, 0xbad,
		    "error on enabled probe ID 1: invalid address (0xbad)" };
		if (dtp->drop_fn(&drop, dtp->drop_arg) != DTRACE_HANDLE_OK ||
		    dtp->err_fn(&err, dtp->err_arg) != DTRACE_HANDLE_OK)
			return (DTRACE_WORKSTATUS_ERROR);
	}
	if (strstr(dtp->program, "printf")) {
		dtrace_bufdata_t buf = { dtp, "hello from fake\n", NULL, NULL, NULL, 0 };
		dtp->buf_fn(&buf, dtp->buf_arg);
	}
	return (DTRACE_WORKSTATUS_OKAY);
}

int
dtrace_handle_err(dtrace_hdl_t *dtp, dtrace_handle_err_f *fn, void *arg)
{
	if (dtp->going)
		return (fail(dtp, "too late to add an error handler"));
	dtp->err_fn = fn;
	dtp->err_arg = arg;
	return (0);
}

int
dtrace_handle_drop(dtrace_hdl_t *dtp, dtrace_handle_drop_f *fn, void *arg)
{
	dtp->drop_fn = fn;
	dtp->drop_arg = arg;
	return (0);
}

int
dtrace_handle_buffered(dtrace_hdl_t *dtp, dtrace_handle_buffered_f *fn, void *arg)
{
	dtp->buf_fn = fn;
	dtp->buf_arg = arg;
	return (0);
}

int
dtrace_aggregate_snap(dtrace_hdl_t *dtp)
{
	(void) dtp;
	return (0);
}

int
dtrace_aggregate_walk(dtrace_hdl_t *dtp, dtrace_aggregate_f *fn, void *arg)
{
	for (int i = 0; i < naggs; i++) {
		aggs[i].data.dtada_handle = dtp;
		switch (fn(&aggs[i].data, arg)) {
		case DTRACE_AGGWALK_NEXT:
			break;
		case DTRACE_AGGWALK_ABORT:
			return (fail(dtp, "Abort explicitly directed"));
		default:
			return (fail(dtp, "unexpected walk return value"));
		}
	}
	return (0);
}

int
dtrace_addr2str(dtrace_hdl_t *dtp, uint64_t addr, char *str, int n)
{
	(void) dtp;
	snprintf(str, n, "%s", addr == 0x1000 ? "genunix`fop_read+0x10" :
	    addr == 0x2000 ? "zfs`zio_wait+0x4" : "0x0");
	return (0);
}

int
dtrace_uaddr2str(dtrace_hdl_t *dtp, pid_t pid, uint64_t addr, char *str, int n)
{
	(void) dtp;
	snprintf(str, n, "%s", pid != 42 ? "?" : addr == 0x3000 ? "libc.so.1`read+0x8" :
	    addr == 0x4000 ? "libumem.so.1`malloc+0x2" : "0x0");
	return (0);
}
