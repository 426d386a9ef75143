/*
 * A fake libdtrace with the illumos ABI, for testing smartos-telemetry's
 * illumos path on Linux.  It is held to illumos, not to the binding:
 *
 * - dtrace.h declares only what illumos' <dtrace.h> and <sys/dtrace.h>
 *   declare, with illumos' types (each block cites its source line).
 * - Programs arrive the way illumos takes them (dt_cc.c dt_compile): as a
 *   string of any length (dtrace_program_strcompile) or from a FILE
 *   (dtrace_program_fcompile).  As in illumos (dt_parser.c xyvwarn,
 *   dt_set_errmsg), a compile error names its line only when the program
 *   came from a FILE.
 * - The aggregations hold what the kernel computes from raw values, by the
 *   rules of illumos uts/common/dtrace/dtrace.c (dtrace_aggregate_*), laid
 *   out as illumos libdtrace hands them out: dtagd_rec[0] is the variable
 *   id, then the keys, then the value, all at offsets into dtada_data;
 *   l/llquantize values begin with their encoded parameter word.
 *
 * It understands a small subset of D, one statement per ';':
 *
 *   #pragma D option NAME[=VALUE]
 *   PROBE [/predicate/] { STATEMENT; ... }
 *
 * PROBE is BEGIN (fired by dtrace_go), END (never fired) or fake:::NAME,
 * fired by the test through fake_fire(NAME, arg0, arg1, arg2, arg3); any
 * other provider matches no probes.  Predicates are accepted and ignored.
 * STATEMENT is one of
 *
 *   @name[KEY, ...] = ACTION(ARGS)   count() sum(argN) min max avg stddev
 *                                    quantize(argN)
 *                                    lquantize(argN, base, limit[, step])
 *                                    llquantize(argN, factor, low, high, nsteps)
 *   KEY: "string", argN, (char|short|int|long)argN, sym(argN), mod(argN),
 *        usym(argN), umod(argN)   (the firing thread's pid is FAKE_PID)
 *   printf("text")                   handed out by the next dtrace_work
 *   normalize(@name, N)
 *   exit(N)
 *
 * Probes with effects on the consumer: firing fake:::drop queues arg0
 * aggregation drops and one run-time error (invalid address) for the next
 * dtrace_work; fake:::die makes dtrace_work fail as for a consumer the
 * kernel aborted; fake:::status-fails makes dtrace_status fail (-1, as
 * illumos' dt_work.c dtrace_status does).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrace.h"

const char *const _dtrace_version = "Sun D 1.13 (fake illumos libdtrace)";

#define	FAKE_PID	42
#define	FAULT_BADADDR	1	/* DTRACEFLT_BADADDR, illumos sys/dtrace.h */
#define	MAXKEYS		8
#define	MAXNAME		64

enum keykind { K_STR, K_INT, K_SYM, K_MOD, K_USYM, K_UMOD };

struct keyspec {
	enum keykind kind;
	int size;		/* bytes of the record */
	int arg;		/* argN it reads */
	char str[MAXNAME];	/* K_STR: the literal */
};

struct row {
	struct row *next;
	dtrace_aggdata_t data;
};

struct agg {
	char name[MAXNAME];
	dtrace_actkind_t action;
	uint64_t param;		/* l/llquantize parameter word */
	int nkeys;
	struct keyspec keys[MAXKEYS];
	dtrace_aggdesc_t *desc;
	uint32_t keyend;	/* bytes of varid + keys */
	uint32_t size;		/* bytes of a whole row */
	uint64_t normal;
	struct row *rows;
};

enum stmtkind { S_AGG, S_PRINTF, S_NORMALIZE, S_EXIT };

struct stmt {
	enum stmtkind kind;
	struct agg *agg;
	int valarg;			/* argN the value is */
	struct keyspec keys[MAXKEYS];	/* S_AGG */
	char text[256];			/* S_PRINTF */
	int64_t n;			/* S_NORMALIZE */
};

struct clause {
	char probe[128];
	int nstmts;
	struct stmt *stmts;
};

struct dtrace_prog {
	int nclauses;
	struct clause *clauses;
	dtrace_prog_t *next;	/* the handle's enabled programs */
};

struct dtrace_hdl {
	int err;
	char errmsg[512];
	int strsize;
	int destructive;
	dtrace_prog_t *enabled;
	dtrace_prog_t *compiled;	/* every program, freed at close */
	int naggs;
	struct agg *aggs[256];
	dtrace_handle_err_f *err_fn;
	void *err_arg;
	dtrace_handle_drop_f *drop_fn;
	void *drop_arg;
	dtrace_handle_buffered_f *buf_fn;
	void *buf_arg;
	int going, exited, dead, status_fails;
	uint64_t pending_drops;
	int pending_errors;
	int noutput;
	char output[64][256];
	dtrace_hdl_t *next_open;
};

/* fake_fire runs on the test's thread, dtrace_work on the keep-alive's */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dtrace_hdl_t *open_handles;

static int
fail(dtrace_hdl_t *dtp, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void) vsnprintf(dtp->errmsg, sizeof (dtp->errmsg), fmt, ap);
	va_end(ap);
	dtp->err = 1;
	return (-1);
}

/* ---- the kernel's aggregating functions (illumos dtrace.c) ---------- */

/* the header's sizes are size_t expressions */
#define	ZEROBUCKET	((int)DTRACE_QUANTIZE_ZEROBUCKET)
#define	NBUCKETS	((int)DTRACE_QUANTIZE_NBUCKETS)

/* dtrace_aggregate_quantize: below zero the first bucket with v <= its
   value; from zero up the last bucket whose value is <= v */
static int
quantize_bucket(int64_t v)
{
	int b;

	if (v < 0) {
		for (b = 0; b < ZEROBUCKET; b++)
			if (v <= DTRACE_QUANTIZE_BUCKETVAL((size_t)b))
				return (b);
		abort();
	}
	for (b = ZEROBUCKET + 1; b < NBUCKETS; b++)
		if (v < DTRACE_QUANTIZE_BUCKETVAL((size_t)b))
			return (b - 1);
	return (NBUCKETS - 1);
}

/* dtrace_aggregate_lquantize: the value is truncated to int32_t first, so
   a value beyond 32 bits is bucketed by its low 32 bits.  (The kernel
   subtracts the base in 32 bits, undefined where that overflows; this
   subtracts in 64.)  Returns the index among the levels + 2 buckets. */
static int
lquantize_bucket(uint64_t param, int64_t v)
{
	int32_t base = DTRACE_LQUANTIZE_BASE(param);
	uint16_t step = DTRACE_LQUANTIZE_STEP(param);
	uint16_t levels = DTRACE_LQUANTIZE_LEVELS(param);
	int32_t val = (int32_t)v;
	int64_t level;

	if (val < base)
		return (0);
	level = ((int64_t)val - base) / step;
	return (level < levels ? (int)level + 1 : levels + 1);
}

/* dtrace_aggregate_llquantize_bucket: bucket 0 below factor^low; each
   order of magnitude up to high cut into min(nsteps, factor^(m+1))
   buckets, the part below factor^m belonging to the order below; the last
   bucket from factor^(high+1) */
static int
llquantize_bucket(uint64_t param, int64_t v)
{
	uint16_t factor = DTRACE_LLQUANTIZE_FACTOR(param);
	uint16_t low = DTRACE_LLQUANTIZE_LOW(param);
	uint16_t high = DTRACE_LLQUANTIZE_HIGH(param);
	uint16_t nsteps = DTRACE_LLQUANTIZE_NSTEP(param);
	int64_t this = 1, last, next;
	int base = 1, order;

	for (order = 0; order < low; order++)
		this *= factor;
	if (v < (last = this))
		return (0);
	for (this *= factor; order <= high; order++) {
		int nbuckets = this > nsteps ? nsteps : this;

		/* an order past int64 clamps the value into this one */
		if (__builtin_mul_overflow(this, (int64_t)factor, &next)) {
			next = INT64_MAX;
			v = this - 1;
		}
		if (v < this)
			return (base + (v - last) / (this / nbuckets));
		base += nbuckets - nbuckets / factor;
		last = this;
		this = next;
	}
	return (base);
}

static void
aggregate(struct agg *a, int64_t *w, int64_t v)
{
	switch (a->action) {
	case DTRACEAGG_COUNT:
		w[0]++;
		break;
	case DTRACEAGG_SUM:
		w[0] += v;
		break;
	case DTRACEAGG_MIN:
		if (v < w[0])
			w[0] = v;
		break;
	case DTRACEAGG_MAX:
		if (v > w[0])
			w[0] = v;
		break;
	case DTRACEAGG_AVG:
		w[0]++;
		w[1] += v;
		break;
	case DTRACEAGG_STDDEV: {
		/* dtrace_aggregate_stddev: the square of |v| in 128 bits */
		uint64_t m = v < 0 ? -(uint64_t)v : (uint64_t)v;
		unsigned __int128 sq = (unsigned __int128)m * m;
		unsigned __int128 sum = ((unsigned __int128)(uint64_t)w[3] << 64 |
		    (uint64_t)w[2]) + sq;

		w[0]++;
		w[1] += v;
		w[2] = (int64_t)(uint64_t)sum;
		w[3] = (int64_t)(uint64_t)(sum >> 64);
		break;
	}
	case DTRACEAGG_QUANTIZE:
		w[quantize_bucket(v)]++;
		break;
	case DTRACEAGG_LQUANTIZE:
		w[1 + lquantize_bucket(a->param, v)]++;
		break;
	case DTRACEAGG_LLQUANTIZE:
		w[1 + llquantize_bucket(a->param, v)]++;
		break;
	}
}

/* ---- records --------------------------------------------------------- */

static uint32_t
add_rec(dtrace_aggdesc_t *d, uint32_t at, dtrace_actkind_t action, uint32_t size,
    uint32_t align, uint64_t arg)
{
	dtrace_recdesc_t *r = &d->dtagd_rec[d->dtagd_nrecs++];

	at = (at + align - 1) & ~(align - 1);
	r->dtrd_action = action;
	r->dtrd_size = size;
	r->dtrd_offset = at;
	r->dtrd_alignment = (uint16_t)align;
	r->dtrd_arg = arg;
	return (at + size);
}

static uint32_t
value_size(struct agg *a)
{
	switch (a->action) {
	case DTRACEAGG_AVG:
		return (16);
	case DTRACEAGG_STDDEV:
		return (32);
	case DTRACEAGG_QUANTIZE:
		return (8 * DTRACE_QUANTIZE_NBUCKETS);
	case DTRACEAGG_LQUANTIZE:	/* parameter word, levels + 2 buckets */
		return (8 * (DTRACE_LQUANTIZE_LEVELS(a->param) + 3));
	case DTRACEAGG_LLQUANTIZE:	/* bucket(INT64_MAX) + 2 words */
		return (8 * (llquantize_bucket(a->param, INT64_MAX) + 2));
	default:
		return (8);
	}
}

/* lay out the records of an aggregation, as its first statement keys it */
static void
lay_out(struct agg *a, int varid)
{
	int i;
	uint32_t at;
	static const dtrace_actkind_t actions[] = {
		[K_STR] = DTRACEACT_DIFEXPR, [K_INT] = DTRACEACT_DIFEXPR,
		[K_SYM] = DTRACEACT_SYM, [K_MOD] = DTRACEACT_MOD,
		[K_USYM] = DTRACEACT_USYM, [K_UMOD] = DTRACEACT_UMOD,
	};

	a->desc = calloc(1, sizeof (dtrace_aggdesc_t) +
	    (a->nkeys + 1) * sizeof (dtrace_recdesc_t));
	a->desc->dtagd_name = a->name;
	a->desc->dtagd_varid = varid;
	at = add_rec(a->desc, 0, DTRACEACT_DIFEXPR, 4, 4, 0);	/* variable id */
	for (i = 0; i < a->nkeys; i++) {
		struct keyspec *k = &a->keys[i];
		uint32_t align = k->kind == K_STR ? 1 : k->size > 8 ? 8 : k->size;

		at = add_rec(a->desc, at, actions[k->kind], k->size, align, 0);
	}
	a->keyend = at;
	a->size = add_rec(a->desc, at, a->action, value_size(a), 8, 0);
	a->desc->dtagd_size = a->size;
}

static void
build_key(dtrace_hdl_t *dtp, struct agg *a, struct stmt *s, const int64_t *args,
    char *key)
{
	int i;

	memset(key, 0, a->size);
	*(uint32_t *)key = (uint32_t)a->desc->dtagd_varid;
	for (i = 0; i < a->nkeys; i++) {
		char *p = key + a->desc->dtagd_rec[i + 1].dtrd_offset;
		struct keyspec *k = &s->keys[i];
		int64_t v = args[k->arg];

		switch (k->kind) {
		case K_STR:
			(void) strncpy(p, k->str, k->size - 1);
			break;
		case K_INT:
			if (k->size == 1)
				*(int8_t *)p = (int8_t)v;
			else if (k->size == 2)
				*(int16_t *)p = (int16_t)v;
			else if (k->size == 4)
				*(int32_t *)p = (int32_t)v;
			else
				*(int64_t *)p = v;
			break;
		case K_SYM:
		case K_MOD:
			*(uint64_t *)p = (uint64_t)v;
			break;
		case K_USYM:
		case K_UMOD:
			((uint64_t *)p)[0] = FAKE_PID;
			((uint64_t *)p)[1] = (uint64_t)v;
			break;
		}
	}
	(void) dtp;
}

static void
run_agg(dtrace_hdl_t *dtp, struct stmt *s, const int64_t *args)
{
	struct agg *a = s->agg;
	char *key = malloc(a->size);
	struct row *r;
	int64_t *w;

	build_key(dtp, a, s, args, key);
	for (r = a->rows; r != NULL; r = r->next)
		if (memcmp(r->data.dtada_data, key, a->keyend) == 0)
			break;
	if (r == NULL) {
		r = calloc(1, sizeof (*r));
		r->data.dtada_desc = a->desc;
		r->data.dtada_data = key;
		r->data.dtada_size = a->size;
		w = (int64_t *)(key + a->desc->dtagd_rec[a->nkeys + 1].dtrd_offset);
		/* dtag_initial: min and max start from the opposite limit */
		if (a->action == DTRACEAGG_MIN)
			w[0] = INT64_MAX;
		else if (a->action == DTRACEAGG_MAX)
			w[0] = INT64_MIN;
		else if (a->action == DTRACEAGG_LQUANTIZE ||
		    a->action == DTRACEAGG_LLQUANTIZE)
			w[0] = (int64_t)a->param;
		r->next = a->rows;
		a->rows = r;
	} else {
		free(key);
	}
	w = (int64_t *)(r->data.dtada_data + a->desc->dtagd_rec[a->nkeys + 1].dtrd_offset);
	aggregate(a, w, args[s->valarg]);
}

static void
fire_clause(dtrace_hdl_t *dtp, struct clause *c, const int64_t *args)
{
	int i;

	if (strcmp(c->probe, "fake:::drop") == 0) {
		dtp->pending_drops += (uint64_t)args[0];
		dtp->pending_errors++;
	} else if (strcmp(c->probe, "fake:::die") == 0) {
		dtp->dead = 1;
	} else if (strcmp(c->probe, "fake:::status-fails") == 0) {
		dtp->status_fails = 1;
	}
	for (i = 0; i < c->nstmts; i++) {
		struct stmt *s = &c->stmts[i];

		switch (s->kind) {
		case S_AGG:
			run_agg(dtp, s, args);
			break;
		case S_PRINTF:
			if (dtp->noutput < 64)
				(void) snprintf(dtp->output[dtp->noutput++], 256, "%s", s->text);
			break;
		case S_NORMALIZE:
			s->agg->normal = (uint64_t)s->n;
			break;
		case S_EXIT:
			dtp->exited = 1;
			break;
		}
	}
}

static void
fire(dtrace_hdl_t *dtp, const char *probe, const int64_t *args)
{
	dtrace_prog_t *p;
	int i;

	for (p = dtp->enabled; p != NULL; p = p->next)
		for (i = 0; i < p->nclauses; i++)
			if (strcmp(p->clauses[i].probe, probe) == 0)
				fire_clause(dtp, &p->clauses[i], args);
}

/* the test's probe: fires fake:::NAME in every handle that is tracing */
int
fake_fire(const char *name, int64_t arg0, int64_t arg1, int64_t arg2, int64_t arg3)
{
	int64_t args[4] = { arg0, arg1, arg2, arg3 };
	char probe[128];
	dtrace_hdl_t *dtp;
	int n = 0;

	(void) snprintf(probe, sizeof (probe), "fake:::%s", name);
	(void) pthread_mutex_lock(&lock);
	for (dtp = open_handles; dtp != NULL; dtp = dtp->next_open) {
		if (dtp->going && !dtp->exited) {
			fire(dtp, probe, args);
			n++;
		}
	}
	(void) pthread_mutex_unlock(&lock);
	return (n);
}

/* ---- the D subset ------------------------------------------------------ */

struct parser {
	dtrace_hdl_t *dtp;
	dtrace_prog_t *prog;
	char *text;		/* the program, comments blanked */
	size_t i;
	int line;
	int from_file;
};

/* a compile error as libdtrace words it: "line N: " only from a FILE */
static int
syntax_error(struct parser *p, int line, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	(void) vsnprintf(msg, sizeof (msg), fmt, ap);
	va_end(ap);
	if (p->from_file)
		return (fail(p->dtp, "line %d: %s", line, msg));
	return (fail(p->dtp, "%s", msg));
}

static int
near(struct parser *p, int line, const char *at)
{
	char tok[64];
	size_t n = strcspn(at, " \t\n;(){}[],");

	if (n == 0)
		n = 1;
	if (n >= sizeof (tok))
		n = sizeof (tok) - 1;
	memcpy(tok, at, n);
	tok[n] = '\0';
	return (syntax_error(p, line, "syntax error near \"%s\"", tok));
}

static const char *
skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	return (s);
}

static int
ident(const char **sp, char *out, size_t len)
{
	const char *s = *sp;
	size_t n = 0;

	while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
	    (*s >= '0' && *s <= '9') || *s == '_') {
		if (n + 1 < len)
			out[n++] = *s;
		s++;
	}
	out[n] = '\0';
	*sp = s;
	return (n > 0);
}

static int
arg_ref(const char **sp)
{
	const char *s = skip_ws(*sp);

	if (strncmp(s, "arg", 3) != 0 || s[3] < '0' || s[3] > '3')
		return (-1);
	*sp = s + 4;
	return (s[3] - '0');
}

static int
string_lit(const char **sp, char *out, size_t len)
{
	const char *s = skip_ws(*sp);
	size_t n = 0;

	if (*s++ != '"')
		return (0);
	while (*s != '\0' && *s != '"') {
		char c = *s++;

		if (c == '\\' && *s == 'n') {
			c = '\n';
			s++;
		}
		if (n + 1 < len)
			out[n++] = c;
	}
	out[n] = '\0';
	if (*s != '"')
		return (0);
	*sp = s + 1;
	return (1);
}

static int
key_spec(struct parser *p, int line, const char **sp, struct keyspec *k)
{
	const char *s = skip_ws(*sp);
	char word[MAXNAME];
	static const struct { const char *name; int size; } casts[] = {
		{ "char", 1 }, { "short", 2 }, { "int", 4 }, { "long", 8 },
	};
	static const struct { const char *name; enum keykind kind; int size; } fns[] = {
		{ "sym", K_SYM, 8 }, { "mod", K_MOD, 8 },
		{ "usym", K_USYM, 16 }, { "umod", K_UMOD, 16 },
	};
	size_t i;

	memset(k, 0, sizeof (*k));
	if (*s == '"') {
		k->kind = K_STR;
		k->size = p->dtp->strsize;
		if (!string_lit(&s, k->str, sizeof (k->str)))
			return (near(p, line, s));
		*sp = s;
		return (0);
	}
	k->kind = K_INT;
	k->size = 8;
	if (*s == '(') {
		const char *t = s + 1;

		if (!ident(&t, word, sizeof (word)) || *t != ')')
			return (near(p, line, s));
		for (i = 0; i < 4 && strcmp(word, casts[i].name) != 0; i++)
			;
		if (i == 4)
			return (near(p, line, s + 1));
		k->size = casts[i].size;
		s = t + 1;
	} else if (*s != 'a') {
		const char *t = s;

		if (!ident(&t, word, sizeof (word)))
			return (near(p, line, s));
		for (i = 0; i < 4 && strcmp(word, fns[i].name) != 0; i++)
			;
		if (i == 4 || *t != '(')
			return (near(p, line, s));
		k->kind = fns[i].kind;
		k->size = fns[i].size;
		s = t + 1;
		if ((k->arg = arg_ref(&s)) < 0)
			return (near(p, line, s));
		s = skip_ws(s);
		if (*s != ')')
			return (near(p, line, s));
		*sp = s + 1;
		return (0);
	}
	if ((k->arg = arg_ref(&s)) < 0)
		return (near(p, line, s));
	*sp = s;
	return (0);
}

static struct agg *
find_agg(dtrace_hdl_t *dtp, const char *name)
{
	int i;

	for (i = 0; i < dtp->naggs; i++)
		if (strcmp(dtp->aggs[i]->name, name) == 0)
			return (dtp->aggs[i]);
	return (NULL);
}

static const struct {
	const char *name;
	dtrace_actkind_t action;
	int nparams;		/* integer parameters after the value */
} actions[] = {
	{ "count", DTRACEAGG_COUNT, -1 }, { "sum", DTRACEAGG_SUM, 0 },
	{ "min", DTRACEAGG_MIN, 0 }, { "max", DTRACEAGG_MAX, 0 },
	{ "avg", DTRACEAGG_AVG, 0 }, { "stddev", DTRACEAGG_STDDEV, 0 },
	{ "quantize", DTRACEAGG_QUANTIZE, 0 }, { "lquantize", DTRACEAGG_LQUANTIZE, 3 },
	{ "llquantize", DTRACEAGG_LLQUANTIZE, 4 },
};

/* the parameter word of l/llquantize, checked as the D compiler checks it */
static int
agg_param(struct parser *p, int line, dtrace_actkind_t action, int n,
    const int64_t *v, uint64_t *param)
{
	if (action == DTRACEAGG_LQUANTIZE) {
		int64_t base = v[0], limit = v[1], step = n > 2 ? v[2] : 1, levels;

		if (n < 2 || base < INT32_MIN || limit > INT32_MAX || step < 1 ||
		    step > UINT16_MAX || limit <= base)
			return (syntax_error(p, line, "lquantize( ) invalid parameters"));
		levels = (limit - base) / step;
		if (levels < 1 || levels > UINT16_MAX)
			return (syntax_error(p, line, "lquantize( ) invalid levels"));
		*param = (uint64_t)step << DTRACE_LQUANTIZE_STEPSHIFT |
		    (uint64_t)levels << DTRACE_LQUANTIZE_LEVELSHIFT |
		    (uint64_t)(uint32_t)base << DTRACE_LQUANTIZE_BASESHIFT;
		return (0);
	}
	if (n != 4 || v[0] < 2 || v[1] < 0 || v[2] <= v[1] || v[3] < v[0] ||
	    v[3] % v[0] != 0 || v[0] > UINT16_MAX || v[2] > UINT16_MAX || v[3] > UINT16_MAX)
		return (syntax_error(p, line, "llquantize( ) invalid parameters"));
	*param = (uint64_t)v[0] << DTRACE_LLQUANTIZE_FACTORSHIFT |
	    (uint64_t)v[1] << DTRACE_LLQUANTIZE_LOWSHIFT |
	    (uint64_t)v[2] << DTRACE_LLQUANTIZE_HIGHSHIFT |
	    (uint64_t)v[3] << DTRACE_LLQUANTIZE_NSTEPSHIFT;
	return (0);
}

static int
agg_stmt(struct parser *p, int line, const char *s, struct stmt *st)
{
	char name[MAXNAME], word[MAXNAME];
	struct keyspec keys[MAXKEYS];
	int nkeys = 0, nvals = 0;
	int64_t vals[4];
	uint64_t param = 0;
	size_t i;
	struct agg *a;

	s++;			/* '@' */
	if (!ident(&s, name, sizeof (name)))
		return (near(p, line, s));
	s = skip_ws(s);
	if (*s == '[') {
		s++;
		do {
			if (nkeys == MAXKEYS)
				return (near(p, line, s));
			if (key_spec(p, line, &s, &keys[nkeys++]) != 0)
				return (-1);
			s = skip_ws(s);
		} while (*s == ',' && s++);
		if (*s++ != ']')
			return (near(p, line, s - 1));
		s = skip_ws(s);
	}
	if (*s++ != '=')
		return (near(p, line, s - 1));
	s = skip_ws(s);
	if (!ident(&s, word, sizeof (word)))
		return (near(p, line, s));
	for (i = 0; i < sizeof (actions) / sizeof (actions[0]); i++)
		if (strcmp(word, actions[i].name) == 0)
			break;
	if (i == sizeof (actions) / sizeof (actions[0]) || *s++ != '(')
		return (near(p, line, s - 1));
	st->valarg = 0;
	if (actions[i].nparams >= 0 && (st->valarg = arg_ref(&s)) < 0)
		return (near(p, line, s));
	for (s = skip_ws(s); *s == ','; s = skip_ws(s)) {
		char *end;

		if (nvals == 4)
			return (near(p, line, s));
		vals[nvals++] = strtoll(s + 1, &end, 0);
		if (end == s + 1)
			return (near(p, line, s + 1));
		s = end;
	}
	if (*s++ != ')' || *skip_ws(s) != '\0')
		return (near(p, line, s - 1));
	if (actions[i].nparams > 0 &&
	    agg_param(p, line, actions[i].action, nvals, vals, &param) != 0)
		return (-1);
	if ((a = find_agg(p->dtp, name)) == NULL) {
		if (p->dtp->naggs == 256)
			return (syntax_error(p, line, "too many aggregations"));
		a = calloc(1, sizeof (*a));
		(void) snprintf(a->name, sizeof (a->name), "%s", name);
		a->action = actions[i].action;
		a->param = param;
		a->nkeys = nkeys;
		memcpy(a->keys, keys, sizeof (keys));
		a->normal = 1;
		p->dtp->aggs[p->dtp->naggs++] = a;
		lay_out(a, p->dtp->naggs);
	} else if (a->action != actions[i].action || a->nkeys != nkeys ||
	    a->param != param) {
		return (syntax_error(p, line, "@%s redeclared differently", name));
	}
	st->kind = S_AGG;
	st->agg = a;
	memcpy(st->keys, keys, sizeof (keys));
	return (0);
}

static int
statement(struct parser *p, int line, char *s, struct clause *c)
{
	struct stmt st;
	char name[MAXNAME];
	const char *t;

	memset(&st, 0, sizeof (st));
	s = (char *)skip_ws(s);
	if (*s == '\0')
		return (0);
	if (*s == '@') {
		if (agg_stmt(p, line, s, &st) != 0)
			return (-1);
	} else if (strncmp(s, "printf(", 7) == 0) {
		t = s + 7;
		if (!string_lit(&t, st.text, sizeof (st.text)) || *skip_ws(t) != ')')
			return (near(p, line, s));
		st.kind = S_PRINTF;
	} else if (strncmp(s, "normalize(", 10) == 0) {
		char *end;

		t = skip_ws(s + 10);
		if (*t++ != '@' || !ident(&t, name, sizeof (name)))
			return (near(p, line, s));
		t = skip_ws(t);
		if (*t != ',' || (st.agg = find_agg(p->dtp, name)) == NULL)
			return (near(p, line, t));
		st.n = strtoll(t + 1, &end, 0);
		if (end == t + 1 || *skip_ws(end) != ')' || st.n < 1)
			return (near(p, line, end));
		st.kind = S_NORMALIZE;
	} else if (strncmp(s, "exit(", 5) == 0) {
		st.kind = S_EXIT;
	} else {
		return (near(p, line, s));
	}
	c->stmts = realloc(c->stmts, (c->nstmts + 1) * sizeof (struct stmt));
	c->stmts[c->nstmts++] = st;
	return (0);
}

static char
next(struct parser *p)
{
	char c = p->text[p->i];

	if (c != '\0')
		p->i++;
	if (c == '\n')
		p->line++;
	return (c);
}

static void
skip(struct parser *p)
{
	while (p->text[p->i] == ' ' || p->text[p->i] == '\t' || p->text[p->i] == '\n')
		(void) next(p);
}

static int
pragma(struct parser *p)
{
	char *line = p->text + p->i, *end = strchr(line, '\n');
	char opt[MAXNAME];

	if (end != NULL)
		*end = '\0';
	if (sscanf(line, "#pragma D option %63[a-z]", opt) == 1 &&
	    strcmp(opt, "destructive") == 0)
		p->dtp->destructive = 1;
	if (end != NULL)
		*end = '\n';
	while (p->text[p->i] != '\0' && p->text[p->i] != '\n')
		(void) next(p);
	return (0);
}

static int
probe_exists(const char *probe)
{
	return (strcmp(probe, "BEGIN") == 0 || strcmp(probe, "END") == 0 ||
	    (strncmp(probe, "fake:::", 7) == 0 && probe[7] != '\0'));
}

static int
clause(struct parser *p)
{
	struct clause c;
	size_t start = p->i, n;
	int line = p->line;

	memset(&c, 0, sizeof (c));
	while (p->text[p->i] != '\0' && p->text[p->i] != '{' && p->text[p->i] != '/')
		(void) next(p);
	n = p->i - start;
	while (n > 0 && (p->text[start + n - 1] == ' ' || p->text[start + n - 1] == '\t' ||
	    p->text[start + n - 1] == '\n'))
		n--;
	if (n == 0 || n >= sizeof (c.probe))
		return (near(p, line, p->text + start));
	memcpy(c.probe, p->text + start, n);
	if (strcspn(c.probe, " \t\n") != n)
		return (near(p, line, p->text + start + strcspn(c.probe, " \t\n") + 1));
	if (!probe_exists(c.probe))
		return (syntax_error(p, line,
		    "probe description %s does not match any probes", c.probe));
	if (p->text[p->i] == '/') {		/* predicate: ignored */
		(void) next(p);
		while (p->text[p->i] != '\0' && p->text[p->i] != '/')
			(void) next(p);
		if (next(p) != '/')
			return (syntax_error(p, p->line, "syntax error near end of input"));
		skip(p);
	}
	if (next(p) != '{')
		return (near(p, p->line, p->text + p->i - 1));
	for (;;) {
		size_t s;
		int sline, quoted = 0;
		char end;

		skip(p);
		s = p->i;
		sline = p->line;
		while (p->text[p->i] != '\0' &&
		    (quoted || (p->text[p->i] != ';' && p->text[p->i] != '}'))) {
			if (p->text[p->i] == '"')
				quoted = !quoted;
			(void) next(p);
		}
		end = p->text[p->i];
		if (end == '\0')
			return (syntax_error(p, p->line, "syntax error near end of input"));
		p->text[p->i] = '\0';
		if (statement(p, sline, p->text + s, &c) != 0)
			return (-1);
		p->text[p->i] = end;
		(void) next(p);
		if (end == '}')
			break;
	}
	p->prog->clauses = realloc(p->prog->clauses,
	    (p->prog->nclauses + 1) * sizeof (struct clause));
	p->prog->clauses[p->prog->nclauses++] = c;
	return (0);
}

static dtrace_prog_t *
compile(dtrace_hdl_t *dtp, const char *source, int from_file)
{
	struct parser p = { dtp, calloc(1, sizeof (dtrace_prog_t)), strdup(source), 0, 1,
	    from_file };
	char *c;
	int rc = 0;

	/* comments become blanks, their newlines kept for the line count */
	for (c = p.text; (c = strstr(c, "/*")) != NULL; ) {
		char *e = strstr(c + 2, "*/");

		for (; *c != '\0' && (e == NULL || c < e + 2); c++)
			if (*c != '\n')
				*c = ' ';
	}
	p.prog->next = dtp->compiled;
	dtp->compiled = p.prog;
	(void) pthread_mutex_lock(&lock);
	for (skip(&p); rc == 0 && p.text[p.i] != '\0'; skip(&p))
		rc = p.text[p.i] == '#' ? pragma(&p) : clause(&p);
	(void) pthread_mutex_unlock(&lock);
	if (rc == 0 && p.prog->nclauses == 0)
		rc = syntax_error(&p, p.line, "empty D program translation unit");
	free(p.text);
	return (rc == 0 ? p.prog : NULL);
}

/* ---- the libdtrace interface ------------------------------------------ */

dtrace_hdl_t *
dtrace_open(int version, int flags, int *errp)
{
	dtrace_hdl_t *dtp;

	(void) flags;
	if (version != DTRACE_VERSION) {
		*errp = 1;
		return (NULL);
	}
	dtp = calloc(1, sizeof (dtrace_hdl_t));
	dtp->strsize = 256;	/* dtrace_strsize_default, illumos dtrace.c */
	(void) pthread_mutex_lock(&lock);
	dtp->next_open = open_handles;
	open_handles = dtp;
	(void) pthread_mutex_unlock(&lock);
	return (dtp);
}

void
dtrace_close(dtrace_hdl_t *dtp)
{
	dtrace_hdl_t **pp;
	dtrace_prog_t *p, *pn;
	int i, j;

	(void) pthread_mutex_lock(&lock);
	for (pp = &open_handles; *pp != NULL; pp = &(*pp)->next_open) {
		if (*pp == dtp) {
			*pp = dtp->next_open;
			break;
		}
	}
	(void) pthread_mutex_unlock(&lock);
	for (i = 0; i < dtp->naggs; i++) {
		struct row *r, *rn;

		for (r = dtp->aggs[i]->rows; r != NULL; r = rn) {
			rn = r->next;
			free(r->data.dtada_data);
			free(r);
		}
		free(dtp->aggs[i]->desc);
		free(dtp->aggs[i]);
	}
	for (p = dtp->compiled; p != NULL; p = pn) {
		pn = p->next;
		for (j = 0; j < p->nclauses; j++)
			free(p->clauses[j].stmts);
		free(p->clauses);
		free(p);
	}
	for (p = dtp->enabled; p != NULL; p = pn) {	/* copies sharing clauses */
		pn = p->next;
		free(p);
	}
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
	return (fault == FAULT_BADADDR ? "invalid address" : "unknown fault");
}

int
dtrace_setopt(dtrace_hdl_t *dtp, const char *opt, const char *val)
{
	if (strcmp(opt, "strsize") == 0) {
		dtp->strsize = atoi(val);
		return (0);
	}
	if (strcmp(opt, "nosuchoption") == 0)
		return (fail(dtp, "Invalid option name"));
	return (0);
}

int
dtrace_getopt(dtrace_hdl_t *dtp, const char *opt, dtrace_optval_t *val)
{
	*val = DTRACEOPT_UNSET;
	if (strcmp(opt, "destructive") == 0 && dtp->destructive)
		*val = 0;
	return (0);
}

dtrace_prog_t *
dtrace_program_strcompile(dtrace_hdl_t *dtp, const char *s, dtrace_probespec_t spec,
    uint_t cflags, int argc, char *const argv[])
{
	(void) spec; (void) cflags; (void) argc; (void) argv;
	return (compile(dtp, s, 0));
}

dtrace_prog_t *
dtrace_program_fcompile(dtrace_hdl_t *dtp, FILE *fp, uint_t cflags, int argc,
    char *const argv[])
{
	size_t len = 0, cap = 4096, n;
	char *text = malloc(cap);
	dtrace_prog_t *prog;

	(void) cflags; (void) argc; (void) argv;
	while ((n = fread(text + len, 1, cap - len - 1, fp)) > 0) {
		len += n;
		if (cap - len - 1 == 0)
			text = realloc(text, cap *= 2);
	}
	text[len] = '\0';
	prog = compile(dtp, text, 1);
	free(text);
	return (prog);
}

int
dtrace_program_exec(dtrace_hdl_t *dtp, dtrace_prog_t *pgp, dtrace_proginfo_t *pip)
{
	dtrace_prog_t *p;
	int i;

	/* the enabled list chains copies: pgp itself is on the compiled list */
	p = malloc(sizeof (*p));
	*p = *pgp;
	(void) pthread_mutex_lock(&lock);
	p->next = dtp->enabled;
	dtp->enabled = p;
	(void) pthread_mutex_unlock(&lock);
	if (pip != NULL) {
		memset(pip, 0, sizeof (*pip));
		pip->dpi_matches = pgp->nclauses;
		pip->dpi_aggregates = dtp->naggs;
		for (i = 0; i < pgp->nclauses; i++)
			pip->dpi_recgens += pgp->clauses[i].nstmts > 0;
	}
	return (0);
}

int
dtrace_go(dtrace_hdl_t *dtp)
{
	int64_t args[4] = { 0, 0, 0, 0 };

	(void) pthread_mutex_lock(&lock);
	dtp->going = 1;
	fire(dtp, "BEGIN", args);
	(void) pthread_mutex_unlock(&lock);
	return (0);
}

int
dtrace_stop(dtrace_hdl_t *dtp)
{
	(void) pthread_mutex_lock(&lock);
	dtp->going = 0;
	(void) pthread_mutex_unlock(&lock);
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
	int rc;

	(void) pthread_mutex_lock(&lock);
	if (dtp->status_fails)
		rc = fail(dtp, "DTRACEIOC_STATUS failed: Bad file number");
	else if (dtp->exited)
		rc = DTRACE_STATUS_EXITED;
	else
		rc = dtp->going ? DTRACE_STATUS_OKAY : DTRACE_STATUS_STOPPED;
	(void) pthread_mutex_unlock(&lock);
	return (rc);
}

dtrace_workstatus_t
dtrace_work(dtrace_hdl_t *dtp, FILE *fp, dtrace_consume_probe_f *pf,
    dtrace_consume_rec_f *rf, void *arg)
{
	dtrace_workstatus_t rc = DTRACE_WORKSTATUS_OKAY;
	int i;

	(void) fp; (void) pf; (void) rf; (void) arg;
	(void) pthread_mutex_lock(&lock);
	if (dtp->dead) {
		(void) fail(dtp, "Abort due to systemic unresponsiveness");
		rc = DTRACE_WORKSTATUS_ERROR;
		goto out;
	}
	if (dtp->pending_drops != 0) {
		char msg[64];
		dtrace_dropdata_t drop = { dtp, 0, DTRACEDROP_AGGREGATION,
		    dtp->pending_drops, dtp->pending_drops, msg };

		(void) snprintf(msg, sizeof (msg), "%llu aggregation drops on CPU 0\n",
		    (unsigned long long)dtp->pending_drops);
		dtp->pending_drops = 0;
		if (dtp->drop_fn(&drop, dtp->drop_arg) != DTRACE_HANDLE_OK) {
			rc = DTRACE_WORKSTATUS_ERROR;
			goto out;
		}
	}
	for (; dtp->pending_errors > 0; dtp->pending_errors--) {
		dtrace_errdata_t err = { dtp, NULL, NULL, 0, 0, 0, FAULT_BADADDR, 0xbad,
		    "error on enabled probe ID 1: invalid address (0xbad)" };

		if (dtp->err_fn(&err, dtp->err_arg) != DTRACE_HANDLE_OK) {
			rc = DTRACE_WORKSTATUS_ERROR;
			goto out;
		}
	}
	for (i = 0; i < dtp->noutput; i++) {
		dtrace_bufdata_t buf = { dtp, dtp->output[i], NULL, NULL, NULL, 0 };

		(void) dtp->buf_fn(&buf, dtp->buf_arg);
	}
	dtp->noutput = 0;
	if (dtp->exited)
		rc = DTRACE_WORKSTATUS_DONE;
out:
	(void) pthread_mutex_unlock(&lock);
	return (rc);
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
	int i, rc = 0;
	struct row *r;

	(void) pthread_mutex_lock(&lock);
	for (i = 0; rc == 0 && i < dtp->naggs; i++) {
		for (r = dtp->aggs[i]->rows; rc == 0 && r != NULL; r = r->next) {
			r->data.dtada_handle = dtp;
			r->data.dtada_normal = dtp->aggs[i]->normal;
			switch (fn(&r->data, arg)) {
			case DTRACE_AGGWALK_NEXT:
				break;
			case DTRACE_AGGWALK_ABORT:
				rc = fail(dtp, "Abort explicitly directed");
				break;
			default:
				rc = fail(dtp, "unexpected walk return value");
			}
		}
	}
	(void) pthread_mutex_unlock(&lock);
	return (rc);
}

int
dtrace_addr2str(dtrace_hdl_t *dtp, uint64_t addr, char *str, int n)
{
	(void) dtp;
	(void) snprintf(str, n, "%s", addr == 0x1000 ? "genunix`fop_read+0x10" :
	    addr == 0x2000 ? "zfs`zio_wait+0x4" : "0x0");
	return (0);
}

int
dtrace_uaddr2str(dtrace_hdl_t *dtp, pid_t pid, uint64_t addr, char *str, int n)
{
	(void) dtp;
	(void) snprintf(str, n, "%s", pid != FAKE_PID ? "?" :
	    addr == 0x3000 ? "libc.so.1`read+0x8" :
	    addr == 0x4000 ? "libumem.so.1`malloc+0x2" : "0x0");
	return (0);
}
