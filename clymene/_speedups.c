/* The two innermost loops of a steady scrape, in C.

   Both are exact replacements for Python functions that stay as the reference and
   the fallback (tests/test_speedups.py runs both on the same inputs):

   shape_values(body, text, ends, samples) -> list[float] | None | NotImplemented
       clymene.scrape.parser.values_in_shape for a document of a known TextShape:
       None when the document is not of that layout (the Python path would say so too:
       every line is compared byte for byte), NotImplemented when a value is not one
       read here (Go's rarer spellings, overflows): the Python path decides those.
   encode_run(batch, labels, heads, ends, ts, ts_bytes) -> bytes | None
       the same as encode_known for a batch of the labels of a known run.
   encode_known(batch, heads, ts, ts_bytes) -> bytes | None
       clymene.storage.remote_write_pb._encode_known's loop over the samples.

   The encoders return None whenever the input is not the plain case they handle; the
   caller then takes the Python path, so nothing here decides anything the Python code
   would decide differently. bench/RESULTS.md has the figures that justify the file. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- values */

/* Whether [p, end) is a plain decimal on which Python's float() and Go's ParseFloat
   agree: [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)? */
static int
plain_decimal(const char *p, const char *end)
{
    int digits = 0;
    if (p < end && (*p == '+' || *p == '-'))
        p++;
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    if (!digits)
        return 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return 0;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p == end;
}

/* Clinger's fast path, for a text plain_decimal accepted: when the digits make an
   integer below 2^53 and the power of ten is at most 22, both are exact doubles and one
   multiplication or division rounds correctly, so the result is what strtod gives.
   0 when the text is not of that kind (the caller then uses strtod). */
static int
exact_decimal(const char *p, const char *end, double *out)
{
    static const double pow10[] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    };
    int negative = 0, digits = 0, exp10 = 0;
    uint64_t mantissa = 0;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (mantissa || *p != '0')
            digits++;
        mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        if (digits > 15)
            return 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (mantissa || *p != '0')
                digits++;
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            exp10--;
            if (digits > 15 || exp10 < -22)
                return 0;
        }
    }
    if (p != end)
        return 0; /* an exponent: left to strtod */
    double v = (double)mantissa; /* exact: below 10^15 < 2^53 */
    v = exp10 ? v / pow10[-exp10] : v;
    *out = negative ? -v : v;
    return 1;
}

/* The value of one value text; 0 when it is not one handled here. */
static int
parse_value(const char *p, const char *end, double *out)
{
    Py_ssize_t n = end - p;
    char buf[64];
    char *stop;
    uint64_t bits;

    /* What Go writes for the special values (Prometheus' text exposition). */
    if (n == 3 && memcmp(p, "NaN", 3) == 0) {
        bits = 0x7FF8000000000001ULL; /* value.NormalNaN, as parser.NORMAL_NAN */
        memcpy(out, &bits, 8);
        return 1;
    }
    if ((n == 4 && memcmp(p, "+Inf", 4) == 0) || (n == 3 && memcmp(p, "Inf", 3) == 0)) {
        *out = Py_HUGE_VAL;
        return 1;
    }
    if (n == 4 && memcmp(p, "-Inf", 4) == 0) {
        *out = -Py_HUGE_VAL;
        return 1;
    }
    if (n == 0 || n >= (Py_ssize_t)sizeof(buf) || !plain_decimal(p, end))
        return 0;
    if (exact_decimal(p, end, out))
        return 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    /* Correctly rounded, as float(); no exception on overflow: it gives +-inf, which
       Go refuses ("value out of range"), so the Python path must judge it. */
    *out = PyOS_string_to_double(buf, &stop, NULL);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != buf + n || Py_IS_INFINITY(*out))
        return 0;
    return 1;
}

static PyObject *
shape_values(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer body, text, ends, samples;
    PyObject *out = NULL;

    if (!PyArg_ParseTuple(args, "y*y*y*y*", &body, &text, &ends, &samples))
        return NULL;
    /* One buffer for the whole layout, read in order: scattered bytes objects would
       each cost a cache miss when a scrape starts with cold caches. */
    Py_ssize_t nlines = samples.len;
    const uint32_t *end_of = ends.buf;
    const char *flags = samples.buf;
    const char *want = text.buf;
    Py_ssize_t nsamples = 0;
    if (ends.len != nlines * (Py_ssize_t)sizeof(uint32_t)
            || (nlines && end_of[nlines - 1] != (uint64_t)text.len)) {
        PyErr_SetString(PyExc_ValueError, "one end offset per line, the last at the end");
        goto done;
    }
    for (Py_ssize_t i = 0; i < nlines; i++)
        nsamples += flags[i] != 0;
    out = PyList_New(nsamples);
    if (out == NULL)
        goto done;

    const char *p = body.buf;
    const char *end = p + body.len;
    Py_ssize_t k = 0;
    uint32_t start = 0;
    for (Py_ssize_t i = 0; i < nlines; i++) {
        /* Lines as str.split("\n") gives them: the last one ends at the end. */
        const char *eol = memchr(p, '\n', end - p);
        if (i == nlines - 1) {
            if (eol != NULL)
                goto mismatch;
            eol = end;
        }
        else if (eol == NULL)
            goto mismatch;
        Py_ssize_t wlen = (Py_ssize_t)end_of[i] - start;
        if (wlen < 0)
            goto mismatch;
        if (flags[i]) {
            /* The line up to its value: the series key and one blank. */
            double v;
            if (eol - p <= wlen || memcmp(p, want + start, wlen) != 0)
                goto mismatch;
            if (!parse_value(p + wlen, eol, &v))
                goto undecided;
            PyObject *f = PyFloat_FromDouble(v);
            if (f == NULL) {
                Py_CLEAR(out);
                goto done;
            }
            PyList_SET_ITEM(out, k++, f);
        }
        else if (eol - p != wlen || memcmp(p, want + start, wlen) != 0)
            goto mismatch;
        start = end_of[i];
        p = eol + 1;
    }
    goto done;

mismatch:
    Py_CLEAR(out);
    out = Py_NewRef(Py_None);
    goto done;
undecided:
    Py_CLEAR(out);
    out = Py_NewRef(Py_NotImplemented);
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&text);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&samples);
    return out;
}

/* ---------------------------------------------------------------- encoding */

struct item {
    const char *head;     /* cached TimeSeries head, up to and with the value tag */
    Py_ssize_t head_len;
    double value;
    int zero;             /* all bits zero: proto3 leaves the value out */
};

static Py_ssize_t
varint_len(uint64_t n)
{
    Py_ssize_t len = 1;
    while (n >= 0x80) {
        n >>= 7;
        len++;
    }
    return len;
}

static char *
put_varint(char *out, uint64_t n)
{
    while (n >= 0x80) {
        *out++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *out++ = (char)n;
    return out;
}

/* A head is 0x0a, varint(L), labels, 0x12, full, 0x09 with full = 9 + len(ts_bytes) and
   L = len(labels) + full + 2. Sets the labels' offset and length; 0 if malformed. */
static int
head_labels(const char *head, Py_ssize_t len, Py_ssize_t full, Py_ssize_t *off,
            Py_ssize_t *lb_len)
{
    uint64_t n = 0;
    int shift = 0;
    Py_ssize_t i = 1;
    for (;;) {
        if (i >= len || shift > 63)
            return 0;
        unsigned char b = (unsigned char)head[i++];
        n |= (uint64_t)(b & 0x7F) << shift;
        shift += 7;
        if (b < 0x80)
            break;
    }
    if ((Py_ssize_t)n < full + 2 || i + (Py_ssize_t)n - full - 2 + 3 != len)
        return 0;
    *off = i;
    *lb_len = (Py_ssize_t)n - full - 2;
    return 1;
}

/* Item i of a batch: a (labels, value, timestamp) tuple stamped `ts`. 1 with its value
   in *value; 0 when it is not such a tuple; -1 with an exception set. */
static int
sample_at(PyObject *sample, PyObject *ts, double *value)
{
    if (!PyTuple_Check(sample) || PyTuple_GET_SIZE(sample) != 3)
        return 0;
    PyObject *stamp = PyTuple_GET_ITEM(sample, 2);
    if (stamp != ts) {
        int eq = PyObject_RichCompareBool(stamp, ts, Py_EQ);
        if (eq <= 0)
            return eq;
    }
    *value = PyFloat_AsDouble(PyTuple_GET_ITEM(sample, 1));
    if (*value == -1.0 && PyErr_Occurred())
        return -1;
    return 1;
}

/* Sets the item's value and returns its encoded size; -1 when its head is malformed. */
static Py_ssize_t
item_size(struct item *it, double value, Py_ssize_t full, Py_ssize_t ts_len)
{
    uint64_t bits;
    memcpy(&bits, &value, 8);
    it->value = value;
    it->zero = bits == 0;
    if (!it->zero)
        return it->head_len + 8 + ts_len;
    Py_ssize_t off, lb_len;
    if (!head_labels(it->head, it->head_len, full, &off, &lb_len))
        return -1;
    return 1 + varint_len(lb_len + ts_len + 2) + lb_len + 2 + ts_len;
}

/* The TimeSeries of the items, `total` bytes in all (their item_size). */
static PyObject *
write_items(const struct item *items, Py_ssize_t n, Py_ssize_t total, const char *tsp,
            Py_ssize_t ts_len)
{
    Py_ssize_t full = 9 + ts_len;
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        const struct item *it = &items[i];
        if (it->zero) {
            Py_ssize_t off, lb_len;
            head_labels(it->head, it->head_len, full, &off, &lb_len); /* checked */
            *out++ = 0x0a;
            out = put_varint(out, (uint64_t)(lb_len + ts_len + 2));
            memcpy(out, it->head + off, lb_len);
            out += lb_len;
            *out++ = 0x12;
            *out++ = (char)ts_len;
        }
        else {
            memcpy(out, it->head, it->head_len);
            out += it->head_len;
            memcpy(out, &it->value, 8); /* little-endian, as struct "<d" */
            out += 8;
        }
        memcpy(out, tsp, ts_len);
        out += ts_len;
    }
    return result;
}

static PyObject *
encode_known(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *batch, *heads, *ts;
    Py_buffer tsb;
    PyObject *seen = NULL, *result = NULL;
    struct item *items = NULL;

    if (!PyArg_ParseTuple(args, "O!O!Oy*", &PyList_Type, &batch, &PyDict_Type, &heads,
                          &ts, &tsb))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(batch);
    Py_ssize_t full = 9 + tsb.len;
    Py_ssize_t total = 0;

    items = PyMem_Malloc(sizeof(struct item) * (n ? n : 1));
    seen = PySet_New(NULL);
    if (items == NULL || seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sample = PyList_GET_ITEM(batch, i);
        double v;
        int found = sample_at(sample, ts, &v);
        if (found < 0)
            goto done;
        if (!found)
            goto not_known;
        PyObject *key = PyLong_FromVoidPtr(PyTuple_GET_ITEM(sample, 0)); /* id(labels) */
        if (key == NULL)
            goto done;
        PyObject *entry = PyDict_GetItemWithError(heads, key);
        Py_DECREF(key);
        if (entry == NULL) {
            if (PyErr_Occurred())
                goto done;
            goto not_known;
        }
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2
                || !PyBytes_Check(PyTuple_GET_ITEM(entry, 1)))
            goto not_known;
        PyObject *head = PyTuple_GET_ITEM(entry, 1);
        /* Equal heads mean equal labels: a labels twice is not this function's case. */
        Py_ssize_t before = PySet_GET_SIZE(seen);
        if (PySet_Add(seen, head) < 0)
            goto done;
        if (PySet_GET_SIZE(seen) == before)
            goto not_known;
        items[i].head = PyBytes_AS_STRING(head);
        items[i].head_len = PyBytes_GET_SIZE(head);
        Py_ssize_t size = item_size(&items[i], v, full, tsb.len);
        if (size < 0)
            goto not_known;
        total += size;
    }
    result = write_items(items, n, total, tsb.buf, tsb.len);
    goto done;

not_known:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(items);
    Py_XDECREF(seen);
    PyBuffer_Release(&tsb);
    return result;
}

/* A batch whose labels are, object for object, those of a run whose heads lie in order
   in one buffer: nothing is looked up, and the heads are read front to back. */
static PyObject *
encode_run(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *batch, *labels, *ts;
    Py_buffer heads, ends, tsb;
    PyObject *result = NULL;
    struct item *items = NULL;

    if (!PyArg_ParseTuple(args, "O!O!y*y*Oy*", &PyList_Type, &batch, &PyList_Type, &labels,
                          &heads, &ends, &ts, &tsb))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(batch);
    Py_ssize_t full = 9 + tsb.len;
    const uint32_t *end_of = ends.buf;
    const char *hp = heads.buf;
    Py_ssize_t total = 0;
    if (PyList_GET_SIZE(labels) != n || ends.len != n * (Py_ssize_t)sizeof(uint32_t)
            || (n && end_of[n - 1] != (uint64_t)heads.len))
        goto not_run;
    items = PyMem_Malloc(sizeof(struct item) * (n ? n : 1));
    if (items == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t start = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sample = PyList_GET_ITEM(batch, i);
        double v;
        int found = sample_at(sample, ts, &v);
        if (found < 0)
            goto done;
        if (!found || PyTuple_GET_ITEM(sample, 0) != PyList_GET_ITEM(labels, i)
                || end_of[i] < start)
            goto not_run;
        items[i].head = hp + start;
        items[i].head_len = (Py_ssize_t)end_of[i] - start;
        Py_ssize_t size = item_size(&items[i], v, full, tsb.len);
        if (size < 0)
            goto not_run;
        total += size;
        start = end_of[i];
    }
    result = write_items(items, n, total, tsb.buf, tsb.len);
    goto done;

not_run:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(items);
    PyBuffer_Release(&heads);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&tsb);
    return result;
}

static PyMethodDef methods[] = {
    {"shape_values", shape_values, METH_VARARGS,
     "shape_values(body, text, ends, samples) -> list[float] | None | NotImplemented: "
     "the values of a "
     "document laid out as `text` (per line: the text before the value for the lines "
     "flagged in `samples`, the whole line for the others; `ends`: uint32 end offsets)."},
    {"encode_run", encode_run, METH_VARARGS,
     "encode_run(batch, labels, heads, ends, ts, ts_bytes) -> bytes | None: encode_known "
     "for a batch whose labels are, in order, the very objects of `labels`, whose heads "
     "are `heads` cut at the uint32 offsets `ends`."},
    {"encode_known", encode_known, METH_VARARGS,
     "encode_known(batch, heads, ts, ts_bytes) -> bytes | None: the WriteRequest bytes of "
     "a batch whose samples all carry `ts` and whose labels all have a cached head."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "clymene._speedups",
    "C loops of the steady scrape path (see clymene/_speedups.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (!(PY_LITTLE_ENDIAN)) {
        PyErr_SetString(PyExc_ImportError, "clymene._speedups assumes little-endian");
        return NULL;
    }
    return PyModule_Create(&module);
}
