/*
 * ripple._speedups: optional C acceleration for ripple.
 *
 * apply_mask(data, mask) -> bytes
 *     XOR ``data`` with the 4-byte WebSocket masking key ``mask``
 *     (RFC 6455 section 5.3). Both arguments may be any object supporting
 *     the buffer protocol. Masking is an involution, so the same call
 *     both masks and unmasks.
 *
 * The pure-Python fallback lives in ripple/protocol/masking.py and must
 * behave identically (same results, same exception types).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Inputs at least this large are processed with the GIL released. */
#define RIPPLE_NOGIL_THRESHOLD ((Py_ssize_t)64 * 1024)

#define RIPPLE_MASK_LEN 4

/*
 * XOR ``len`` bytes of ``src`` into ``dst`` with the repeating 4-byte key.
 * memcpy() is used for every 8-byte load/store so that unaligned buffers
 * do not invoke undefined behaviour; compilers lower it to plain moves.
 */
static void
ripple_xor_mask(const unsigned char *src, unsigned char *dst, Py_ssize_t len,
                const unsigned char key[RIPPLE_MASK_LEN])
{
    unsigned char key8[8];
    uint64_t k64;
    Py_ssize_t i = 0;

    /* key8 holds the key twice in memory order, so the byte layout of k64
     * matches the data regardless of the host's endianness. */
    memcpy(key8, key, RIPPLE_MASK_LEN);
    memcpy(key8 + RIPPLE_MASK_LEN, key, RIPPLE_MASK_LEN);
    memcpy(&k64, key8, sizeof(k64));

    /* Four independent words per iteration keep the pipeline busy. */
    for (; i + 32 <= len; i += 32) {
        uint64_t w0, w1, w2, w3;
        memcpy(&w0, src + i, 8);
        memcpy(&w1, src + i + 8, 8);
        memcpy(&w2, src + i + 16, 8);
        memcpy(&w3, src + i + 24, 8);
        w0 ^= k64;
        w1 ^= k64;
        w2 ^= k64;
        w3 ^= k64;
        memcpy(dst + i, &w0, 8);
        memcpy(dst + i + 8, &w1, 8);
        memcpy(dst + i + 16, &w2, 8);
        memcpy(dst + i + 24, &w3, 8);
    }
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    /* i is a multiple of 8 here, so (i & 3) is still the key phase. */
    for (; i < len; i++) {
        dst[i] = (unsigned char)(src[i] ^ key[i & 3]);
    }
}

/*
 * ripple_xor_mask, without the GIL for large inputs. The exported buffer
 * stays valid (exporters may not resize while a view is held) and ``dst`` is
 * a new bytes object no other thread can see, so no Python state is touched.
 */
static void
ripple_xor_mask_released(const unsigned char *src, unsigned char *dst,
                         Py_ssize_t len, const unsigned char *key)
{
    if (len >= RIPPLE_NOGIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        ripple_xor_mask(src, dst, len, key);
        Py_END_ALLOW_THREADS
    }
    else {
        ripple_xor_mask(src, dst, len, key);
    }
}

/*
 * Acquire a C-contiguous byte view of ``obj``.
 *
 * Non-contiguous exporters (e.g. ``memoryview(b)[::2]``) cannot satisfy a
 * PyBUF_SIMPLE request; they are copied to a temporary bytes object so the
 * C and Python implementations accept exactly the same inputs. On success
 * the caller must PyBuffer_Release(view) and Py_XDECREF(*tmp).
 */
static int
ripple_get_bytes_view(PyObject *obj, const char *what, Py_buffer *view,
                      PyObject **tmp)
{
    *tmp = NULL;
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a bytes-like object, not '%.200s'", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
        return -1;
    }
    PyErr_Clear();
    *tmp = PyBytes_FromObject(obj);
    if (*tmp == NULL) {
        return -1;
    }
    if (PyObject_GetBuffer(*tmp, view, PyBUF_SIMPLE) != 0) {
        Py_CLEAR(*tmp);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask($module, data, mask, /)\n"
"--\n"
"\n"
"Return ``data`` XORed with the 4-byte WebSocket masking key ``mask``.\n"
"\n"
"Both arguments accept any bytes-like object. Raises ValueError if\n"
"``mask`` is not exactly 4 bytes long.");

static PyObject *
ripple_apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data_view, mask_view;
    PyObject *data_tmp = NULL, *mask_tmp = NULL;
    PyObject *result = NULL;
    unsigned char key[RIPPLE_MASK_LEN];
    Py_ssize_t len;

    (void)module;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes exactly 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }

    /* Validate the mask first so a bad key is reported even for empty data. */
    if (ripple_get_bytes_view(args[1], "mask", &mask_view, &mask_tmp) < 0) {
        return NULL;
    }
    if (mask_view.len != RIPPLE_MASK_LEN) {
        PyErr_Format(PyExc_ValueError,
                     "mask must be exactly 4 bytes, got %zd", mask_view.len);
        PyBuffer_Release(&mask_view);
        Py_XDECREF(mask_tmp);
        return NULL;
    }
    /* Copy the key out so it cannot change underneath us without the GIL. */
    memcpy(key, mask_view.buf, RIPPLE_MASK_LEN);
    PyBuffer_Release(&mask_view);
    Py_XDECREF(mask_tmp);

    if (ripple_get_bytes_view(args[0], "data", &data_view, &data_tmp) < 0) {
        return NULL;
    }
    len = data_view.len;

    result = PyBytes_FromStringAndSize(NULL, len);
    if (result != NULL && len > 0) {
        ripple_xor_mask_released(
            (const unsigned char *)data_view.buf,
            (unsigned char *)PyBytes_AS_STRING(result), len, key);
    }

    PyBuffer_Release(&data_view);
    Py_XDECREF(data_tmp);
    return result;
}

PyDoc_STRVAR(unmask_frame_doc,
"unmask_frame($module, buf, key_at, length, /)\n"
"--\n"
"\n"
"Return the ``length`` payload bytes that follow the 4-byte masking key at\n"
"``buf[key_at:key_at + 4]``, unmasked: one call and one allocation per\n"
"frame, straight from the receive buffer. Raises ValueError if the key or\n"
"payload lies outside ``buf``.");

static PyObject *
ripple_unmask_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *result = NULL;
    Py_ssize_t key_at, length;
    unsigned char key[RIPPLE_MASK_LEN];

    (void)module;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "unmask_frame() takes exactly 3 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    key_at = PyLong_AsSsize_t(args[1]);
    if (key_at == -1 && PyErr_Occurred()) {
        return NULL;
    }
    length = PyLong_AsSsize_t(args[2]);
    if (length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    if (key_at < 0 || length < 0
        || key_at > view.len - RIPPLE_MASK_LEN
        || length > view.len - key_at - RIPPLE_MASK_LEN) {
        PyErr_SetString(PyExc_ValueError, "masking key or payload outside the buffer");
        PyBuffer_Release(&view);
        return NULL;
    }
    memcpy(key, (const unsigned char *)view.buf + key_at, RIPPLE_MASK_LEN);
    result = PyBytes_FromStringAndSize(NULL, length);
    if (result != NULL && length > 0) {
        ripple_xor_mask_released(
            (const unsigned char *)view.buf + key_at + RIPPLE_MASK_LEN,
            (unsigned char *)PyBytes_AS_STRING(result), length, key);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef ripple_speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))ripple_apply_mask,
     METH_FASTCALL, apply_mask_doc},
    {"unmask_frame", (PyCFunction)(void (*)(void))ripple_unmask_frame,
     METH_FASTCALL, unmask_frame_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot ripple_speedups_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(ripple_speedups_doc,
"Optional C accelerations for ripple (WebSocket masking).");

static struct PyModuleDef ripple_speedups_module = {
    PyModuleDef_HEAD_INIT,
    "ripple._speedups",      /* m_name */
    ripple_speedups_doc,     /* m_doc */
    0,                       /* m_size: no per-module state */
    ripple_speedups_methods, /* m_methods */
    ripple_speedups_slots,   /* m_slots */
    NULL,                    /* m_traverse */
    NULL,                    /* m_clear */
    NULL,                    /* m_free */
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&ripple_speedups_module);
}
