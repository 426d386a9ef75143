/*
 * _zone_histograms.c -- the libbpf engine's histogram decode, in C.
 *
 * One call decodes every touched zone of one mmap-ed histogram map
 * (maps.py, ZoneSlots.read) into snapshot.PackedHistogram objects: the
 * zone's bitmap of non-empty buckets and their counts, each one bytes
 * object, beside the engine's BucketTable.  It is C, and packed, for one
 * reason: a snapshot of 1,000 zones holds thousands of histograms and
 * hundreds of thousands of counts, and an int object per count and tuples
 * of bounds per zone (or a numpy call per zone) cost several times the
 * whole read.  The layout it reads is st_common.bpf.h's struct st_hist:
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
 * decode(rows, slots, keys, last_bits, values, table, histogram_type)
 *   rows       the map as a C-contiguous (entries, NZ + buckets) uint64 buffer
 *   slots      a list of slot indexes (ints below entries) to decode
 *   keys       a list as long: each slot's key in values
 *   last_bits  a writable (entries, NZ) uint64 buffer: every slot's bitmap
 *              at its last decode, updated here
 *   values     {key: PackedHistogram}, updated here: a slot with no bucket
 *              keeps no entry; a slot whose bitmap is the last decode's
 *              keeps its bitmap object and any bounds tuples made from it
 *              (layout comparisons downstream are then identity checks)
 *   table      the BucketTable the bitmaps index (as many buckets as rows
 *              have after the bitmap)
 *   histogram_type  snapshot.PackedHistogram: its slots are set here as
 *              PackedHistogram.of_buckets sets them
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_NZ_WORDS 64

/* the type's member descriptors */
typedef struct {
	PyTypeObject *type;
	PyObject *table, *bitmap, *packed, *lows, *highs, *unpacked;
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
	if (!(k->table = slot_descr(type, "table", 0)) ||
	    !(k->bitmap = slot_descr(type, "bitmap", 1)) ||
	    !(k->packed = slot_descr(type, "packed", 0)) ||
	    !(k->lows = slot_descr(type, "_lows", 1)) || !(k->highs = slot_descr(type, "_highs", 1)) ||
	    !(k->unpacked = slot_descr(type, "_unpacked", 0))) {
		PyErr_SetString(PyExc_TypeError, "histogram_type needs the slots table, bitmap, "
				"packed, _lows, _highs and _unpacked");
		return -1;
	}
	return 0;
}

static void kind_clear(hist_kind *k)
{
	Py_XDECREF(k->table);
	Py_XDECREF(k->bitmap);
	Py_XDECREF(k->packed);
	Py_XDECREF(k->lows);
	Py_XDECREF(k->highs);
	Py_XDECREF(k->unpacked);
}

static int set_slot(PyObject *descr, PyObject *obj, PyObject *value)
{
	return Py_TYPE(descr)->tp_descr_set(descr, obj, value);
}

/* old's slot (a new reference; None if unset) */
static PyObject *get_slot(PyObject *descr, PyObject *obj, hist_kind *k)
{
	PyObject *v = Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)k->type);

	if (!v && PyErr_ExceptionMatches(PyExc_AttributeError)) {
		PyErr_Clear();
		v = Py_NewRef(Py_None);
	}
	return v;
}

/* A PackedHistogram (references to bitmap, packed, lows, highs stolen). */
static PyObject *new_histogram(hist_kind *k, PyObject *table, PyObject *bitmap,
			       PyObject *packed, PyObject *lows, PyObject *highs)
{
	PyObject *h = k->type->tp_alloc(k->type, 0);
	int rc = -1;

	if (h && set_slot(k->table, h, table) == 0 && set_slot(k->bitmap, h, bitmap) == 0 &&
	    set_slot(k->packed, h, packed) == 0 && set_slot(k->lows, h, lows) == 0 &&
	    set_slot(k->highs, h, highs) == 0 && set_slot(k->unpacked, h, Py_None) == 0)
		rc = 0;
	Py_DECREF(bitmap);
	Py_DECREF(packed);
	Py_DECREF(lows);
	Py_DECREF(highs);
	if (rc < 0) {
		Py_XDECREF(h);
		return NULL;
	}
	return h;
}

static int decode_slot(const uint64_t *row, uint64_t *last, Py_ssize_t nz, Py_ssize_t nbuckets,
		       PyObject *key, PyObject *values, PyObject *table, hist_kind *k)
{
	uint64_t bits[MAX_NZ_WORDS], *counts;
	Py_ssize_t n = 0, j = 0;
	int moved;
	PyObject *old, *packed, *bitmap, *lows, *highs, *h;

	for (Py_ssize_t w = 0; w < nz; w++) {
		bits[w] = __atomic_load_n(&row[w], __ATOMIC_ACQUIRE);
		/* bits past the last bucket mean nothing */
		if ((w + 1) * 64 > nbuckets)
			bits[w] &= w * 64 >= nbuckets ? 0 : (~0ULL >> (64 - (nbuckets - w * 64)));
		n += __builtin_popcountll(bits[w]);
	}
	moved = memcmp(bits, last, nz * sizeof(uint64_t)) != 0;
	memcpy(last, bits, nz * sizeof(uint64_t));
	if (!n)
		return 0;
	packed = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint64_t));
	if (!packed)
		return -1;
	counts = (uint64_t *)PyBytes_AS_STRING(packed);
	for (Py_ssize_t w = 0; w < nz; w++) {
		for (uint64_t word = bits[w]; word; word &= word - 1)
			counts[j++] = __atomic_load_n(&row[nz + w * 64 + __builtin_ctzll(word)],
						      __ATOMIC_RELAXED);
	}
	old = PyDict_GetItemWithError(values, key); /* borrowed */
	if (!old && PyErr_Occurred()) {
		Py_DECREF(packed);
		return -1;
	}
	if (old && !moved && Py_IS_TYPE(old, k->type)) {
		bitmap = get_slot(k->bitmap, old, k);
		lows = get_slot(k->lows, old, k);
		highs = get_slot(k->highs, old, k);
	} else {
		bitmap = PyBytes_FromStringAndSize((const char *)bits, nz * sizeof(uint64_t));
		lows = Py_NewRef(Py_None);
		highs = Py_NewRef(Py_None);
	}
	if (!bitmap || !lows || !highs) {
		Py_XDECREF(bitmap);
		Py_XDECREF(lows);
		Py_XDECREF(highs);
		Py_DECREF(packed);
		return -1;
	}
	h = new_histogram(k, table, bitmap, packed, lows, highs);
	if (!h)
		return -1;
	if (PyDict_SetItem(values, key, h) < 0) {
		Py_DECREF(h);
		return -1;
	}
	Py_DECREF(h);
	return 0;
}

static PyObject *decode(PyObject *self, PyObject *args)
{
	PyObject *rows_obj, *slots, *keys, *bits_obj, *values, *table, *type;
	Py_buffer rows = {0}, last = {0};
	hist_kind k = {0};
	PyObject *result = NULL, *seq = NULL, *key_seq = NULL, *table_lows = NULL;
	Py_ssize_t entries, width, nz, nbuckets;

	(void)self;
	if (!PyArg_ParseTuple(args, "OOOOO!OO", &rows_obj, &slots, &keys, &bits_obj,
			      &PyDict_Type, &values, &table, &type))
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
	table_lows = PyObject_GetAttrString(table, "lows");
	if (!table_lows)
		goto out;
	entries = rows.shape[0];
	width = rows.shape[1];
	nz = last.shape[1];
	nbuckets = width - nz;
	if (last.shape[0] != entries || nz < 1 || nz > MAX_NZ_WORDS || nbuckets < 1 ||
	    nbuckets > nz * 64 || !PyTuple_Check(table_lows) ||
	    PyTuple_GET_SIZE(table_lows) != nbuckets) {
		PyErr_Format(PyExc_ValueError,
			     "layout mismatch: %zd slots of %zd words, last_bits %zd x %zd, "
			     "a table of %zd buckets", entries, width, last.shape[0], nz,
			     PyTuple_Check(table_lows) ? PyTuple_GET_SIZE(table_lows) : -1);
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
				PySequence_Fast_GET_ITEM(key_seq, i), values, table, &k) < 0)
			goto out;
	}
	result = Py_NewRef(Py_None);
out:
	Py_XDECREF(table_lows);
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
	 "decode(rows, slots, keys, last_bits, values, table, histogram_type): every "
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
