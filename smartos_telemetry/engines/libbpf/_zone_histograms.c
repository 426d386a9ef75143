/*
 * _zone_histograms.c -- the libbpf engine's histogram decode, in C.
 *
 * One call decodes every touched zone of one mmap-ed histogram map
 * (maps.py, ZoneSlots.read) into snapshot.PackedHistogram objects: the
 * bucket bounds as tuples of the ints given, the counts packed in one
 * bytes object (native uint64).  It is C, and the counts packed, for one
 * reason: a snapshot of 1,000 zones holds thousands of histograms and
 * hundreds of thousands of counts, and an int object per count (or a numpy
 * call per zone) costs several times the whole read.  The layout it reads is st_common.bpf.h's struct st_hist:
 * NZ words of bitmap (bit i set: bucket i is not 0), then the bucket
 * counts.
 *
 * Reading memory the programs write while we read: the programs add to a
 * bucket (an atomic add) before they set its bit (an atomic or), so a bit
 * read set always finds a count of at least 1; the bitmap is loaded with
 * acquire ordering before any count.  Counts and bits only grow while a
 * zone holds its slot, so an event missed here is in the next read (the
 * slot's st_touched mark is cleared before this call, see maps.py).
 *
 * decode(rows, slots, keys, last_bits, values, lows, highs, histogram_type)
 *   rows       the map as a C-contiguous (entries, NZ + buckets) uint64 buffer
 *   slots      a list of slot indexes (ints below entries) to decode
 *   keys       a list as long: each slot's key in values
 *   last_bits  a writable (entries, NZ) uint64 buffer: every slot's bitmap
 *              at its last decode, updated here
 *   values     {key: PackedHistogram}, updated here: a slot with no bucket keeps
 *              no entry; a slot whose bitmap is the last decode's keeps its
 *              lows and highs tuples (the same objects, so that layout
 *              comparisons downstream are identity checks)
 *   lows/highs tuples of every bucket's bounds (ints), one per bucket
 *   histogram_type  snapshot.PackedHistogram (its lows, highs, packed and
 *              _unpacked slots are set here, as PackedHistogram.of_packed
 *              sets them)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_NZ_WORDS 64

typedef struct {
	PyTypeObject *type;
	PyObject *lows, *highs, *packed, *unpacked; /* the type's member descriptors */
} hist_kind;

/* A member descriptor of type, or NULL if it has none by that name. */
static PyObject *slot_descr(PyObject *type, const char *name, int readable)
{
	PyObject *d = PyObject_GetAttrString(type, name);

	if (!d) {
		PyErr_Clear();
		return NULL;
	}
	if (!Py_TYPE(d)->tp_descr_set || (readable && !Py_TYPE(d)->tp_descr_get)) {
		Py_DECREF(d);
		return NULL;
	}
	return d;
}

static int kind_of(PyObject *type, hist_kind *k)
{
	if (!PyType_Check(type)) {
		PyErr_SetString(PyExc_TypeError, "histogram_type must be a class");
		return -1;
	}
	k->type = (PyTypeObject *)type;
	if (!(k->lows = slot_descr(type, "lows", 1)) || !(k->highs = slot_descr(type, "highs", 1)) ||
	    !(k->packed = slot_descr(type, "packed", 0)) ||
	    !(k->unpacked = slot_descr(type, "_unpacked", 0))) {
		PyErr_SetString(PyExc_TypeError,
				"histogram_type needs lows, highs, packed and _unpacked slots");
		return -1;
	}
	return 0;
}

static void kind_clear(hist_kind *k)
{
	Py_XDECREF(k->lows);
	Py_XDECREF(k->highs);
	Py_XDECREF(k->packed);
	Py_XDECREF(k->unpacked);
}

static PyObject *get_slot(PyObject *descr, PyObject *obj, hist_kind *k)
{
	return Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)k->type);
}

/* A PackedHistogram of these bounds tuples and packed counts (references
   stolen), as PackedHistogram.of_packed makes one. */
static PyObject *new_histogram(hist_kind *k, PyObject *lows, PyObject *highs,
			       PyObject *packed)
{
	PyObject *h = k->type->tp_alloc(k->type, 0);
	int rc = -1;

	if (h && Py_TYPE(k->lows)->tp_descr_set(k->lows, h, lows) == 0 &&
	    Py_TYPE(k->highs)->tp_descr_set(k->highs, h, highs) == 0 &&
	    Py_TYPE(k->packed)->tp_descr_set(k->packed, h, packed) == 0 &&
	    Py_TYPE(k->unpacked)->tp_descr_set(k->unpacked, h, Py_None) == 0)
		rc = 0;
	Py_DECREF(lows);
	Py_DECREF(highs);
	Py_DECREF(packed);
	if (rc < 0) {
		Py_XDECREF(h);
		return NULL;
	}
	return h;
}

/* The tuple of bounds[i] for the n bucket indexes in idx. */
static PyObject *bounds_tuple(PyObject *bounds, const uint32_t *idx, Py_ssize_t n)
{
	PyObject *t = PyTuple_New(n);

	if (!t)
		return NULL;
	for (Py_ssize_t j = 0; j < n; j++) {
		PyObject *b = PyTuple_GET_ITEM(bounds, idx[j]);

		Py_INCREF(b);
		PyTuple_SET_ITEM(t, j, b);
	}
	return t;
}

/* Is old's layout (its lows tuple) n buckets long? */
static int same_length(PyObject *old, Py_ssize_t n, hist_kind *k)
{
	PyObject *lows = get_slot(k->lows, old, k);
	int same;

	if (!lows) {
		PyErr_Clear();
		return 0;
	}
	same = PyTuple_Check(lows) && PyTuple_GET_SIZE(lows) == n;
	Py_DECREF(lows);
	return same;
}

static int decode_slot(const uint64_t *row, uint64_t *last, Py_ssize_t nz, Py_ssize_t nbuckets,
		       PyObject *key, PyObject *values, PyObject *lows, PyObject *highs,
		       hist_kind *k, uint32_t *idx)
{
	uint64_t bits[MAX_NZ_WORDS];
	Py_ssize_t n = 0;
	int moved;
	PyObject *old, *counts, *h, *lo, *hi;
	uint64_t *packed;

	for (Py_ssize_t w = 0; w < nz; w++)
		bits[w] = __atomic_load_n(&row[w], __ATOMIC_ACQUIRE);
	moved = memcmp(bits, last, nz * sizeof(uint64_t)) != 0;
	memcpy(last, bits, nz * sizeof(uint64_t));
	for (Py_ssize_t w = 0; w < nz; w++) {
		uint64_t word = bits[w];

		while (word) {
			Py_ssize_t i = w * 64 + __builtin_ctzll(word);

			word &= word - 1;
			if (i < nbuckets) /* bits past the last bucket mean nothing */
				idx[n++] = (uint32_t)i;
		}
	}
	if (!n)
		return 0;
	counts = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint64_t));
	if (!counts)
		return -1;
	packed = (uint64_t *)PyBytes_AS_STRING(counts);
	for (Py_ssize_t j = 0; j < n; j++)
		packed[j] = __atomic_load_n(&row[nz + idx[j]], __ATOMIC_RELAXED);
	old = PyDict_GetItemWithError(values, key); /* borrowed */
	if (!old && PyErr_Occurred())
		goto fail;
	if (old && !moved && same_length(old, n, k)) {
		lo = get_slot(k->lows, old, k);
		hi = get_slot(k->highs, old, k);
	} else {
		lo = bounds_tuple(lows, idx, n);
		hi = bounds_tuple(highs, idx, n);
	}
	if (!lo || !hi) {
		Py_XDECREF(lo);
		Py_XDECREF(hi);
		goto fail;
	}
	h = new_histogram(k, lo, hi, counts);
	counts = NULL;
	if (!h || PyDict_SetItem(values, key, h) < 0) {
		Py_XDECREF(h);
		goto fail;
	}
	Py_DECREF(h);
	return 0;
fail:
	Py_XDECREF(counts);
	return -1;
}

static PyObject *decode(PyObject *self, PyObject *args)
{
	PyObject *rows_obj, *slots, *keys, *bits_obj, *values, *lows, *highs, *type;
	Py_buffer rows = {0}, last = {0};
	hist_kind k = {0};
	PyObject *result = NULL, *seq = NULL, *key_seq = NULL;
	uint32_t *idx = NULL;
	Py_ssize_t entries, width, nz, nbuckets;

	(void)self;
	if (!PyArg_ParseTuple(args, "OOOOO!O!O!O", &rows_obj, &slots, &keys, &bits_obj,
			      &PyDict_Type, &values, &PyTuple_Type, &lows,
			      &PyTuple_Type, &highs, &type))
		return NULL;
	if (PyObject_GetBuffer(rows_obj, &rows, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
		return NULL;
	if (PyObject_GetBuffer(bits_obj, &last,
			       PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
		goto out;
	if (rows.ndim != 2 || last.ndim != 2 || rows.itemsize != 8 || last.itemsize != 8) {
		PyErr_SetString(PyExc_ValueError, "rows and last_bits must be 2-D uint64 arrays");
		goto out;
	}
	entries = rows.shape[0];
	width = rows.shape[1];
	nz = last.shape[1];
	nbuckets = width - nz;
	if (last.shape[0] != entries || nz < 1 || nz > MAX_NZ_WORDS || nbuckets < 1 ||
	    nbuckets > nz * 64 || PyTuple_GET_SIZE(lows) != nbuckets ||
	    PyTuple_GET_SIZE(highs) != nbuckets) {
		PyErr_Format(PyExc_ValueError,
			     "layout mismatch: %zd slots of %zd words, last_bits %zd x %zd, "
			     "%zd lows, %zd highs", entries, width, last.shape[0], nz,
			     PyTuple_GET_SIZE(lows), PyTuple_GET_SIZE(highs));
		goto out;
	}
	if (kind_of(type, &k) < 0)
		goto out;
	seq = PySequence_Fast(slots, "slots must be a sequence of ints");
	if (!seq)
		goto out;
	key_seq = PySequence_Fast(keys, "keys must be a sequence");
	if (!key_seq)
		goto out;
	if (PySequence_Fast_GET_SIZE(key_seq) != PySequence_Fast_GET_SIZE(seq)) {
		PyErr_SetString(PyExc_ValueError, "slots and keys differ in length");
		goto out;
	}
	idx = PyMem_Malloc(nbuckets * sizeof(*idx));
	if (!idx) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
		long slot = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));

		if (slot == -1 && PyErr_Occurred())
			goto out;
		if (slot < 0 || slot >= entries) {
			PyErr_Format(PyExc_IndexError, "slot %ld is not below %zd", slot, entries);
			goto out;
		}
		if (decode_slot((const uint64_t *)rows.buf + slot * width,
				(uint64_t *)last.buf + slot * nz, nz, nbuckets,
				PySequence_Fast_GET_ITEM(key_seq, i), values, lows, highs, &k, idx) < 0)
			goto out;
	}
	result = Py_NewRef(Py_None);
out:
	PyMem_Free(idx);
	Py_XDECREF(seq);
	Py_XDECREF(key_seq);
	kind_clear(&k);
	if (last.obj)
		PyBuffer_Release(&last);
	PyBuffer_Release(&rows);
	return result;
}

static PyMethodDef methods[] = {
	{"decode", decode, METH_VARARGS,
	 "decode(rows, slots, keys, last_bits, values, lows, highs, histogram_type): every "
	 "listed slot's histogram into values[key] (see the file's header)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_zone_histograms",
	"The libbpf engine's histogram decode (maps.py), in C.", -1, methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__zone_histograms(void)
{
	return PyModule_Create(&module);
}
