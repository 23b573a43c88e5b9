/*
 * ripple._speedups: optional C acceleration for ripple.
 *
 * apply_mask(data, mask) -> bytes
 *     XOR ``data`` with the 4-byte WebSocket masking key ``mask``
 *     (RFC 6455 section 5.3). Both arguments may be any object supporting
 *     the buffer protocol. Masking is an involution, so the same call
 *     both masks and unmasks.
 *
 * unmask_frame(buf, key_at, length) -> bytes
 *     One masked frame's payload, unmasked straight from the receive buffer.
 *
 * parse_frames(buf, pos, end, masked, max_size, events) -> int
 *     The common frames (whole text/binary, no RSV, 7/16-bit length) parsed
 *     in one call; anything else is left to the Python parser in
 *     ripple/protocol/state.py, which also handles every error.
 *
 * parse_message(buf, end, masked, max_size) -> str | bytes | None
 *     The message when the buffer is exactly one such frame: the usual read.
 *
 * encode_frame(opcode, payload) -> bytes
 *     One unmasked FIN frame, header and payload in one allocation.
 *
 * payload_buffer(size) -> (bytes, memoryview); mask_inplace(buf, mask)
 *     A large payload read straight into the bytes object that becomes the
 *     message, then unmasked in place (ripple/protocol/sink.py).
 *
 * The pure-Python fallbacks live in ripple/protocol/masking.py and state.py
 * and must behave identically (same results, same exception types).
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

/*
 * Copy the 4-byte masking key out of ``obj`` (any bytes-like object) into
 * ``key``: a copy, so it cannot change underneath us without the GIL.
 * Returns -1 with an exception set (TypeError, or ValueError for a bad length).
 */
static int
ripple_get_key(PyObject *obj, unsigned char key[RIPPLE_MASK_LEN])
{
    Py_buffer view;
    PyObject *tmp = NULL;

    if (ripple_get_bytes_view(obj, "mask", &view, &tmp) < 0) {
        return -1;
    }
    if (view.len != RIPPLE_MASK_LEN) {
        PyErr_Format(PyExc_ValueError,
                     "mask must be exactly 4 bytes, got %zd", view.len);
        PyBuffer_Release(&view);
        Py_XDECREF(tmp);
        return -1;
    }
    memcpy(key, view.buf, RIPPLE_MASK_LEN);
    PyBuffer_Release(&view);
    Py_XDECREF(tmp);
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
    Py_buffer data_view;
    PyObject *data_tmp = NULL;
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
    if (ripple_get_key(args[1], key) < 0) {
        return NULL;
    }

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

/* RFC 6455 §5.2 first bytes of the frames parse_frames() takes: FIN set, no
 * RSV bit, text or binary. Everything else goes to the Python parser. */
#define RIPPLE_FIN_TEXT 0x81
#define RIPPLE_FIN_BINARY 0x82

/* Text payloads up to this size are unmasked on the stack before decoding. */
#define RIPPLE_STACK_TEXT 4096

/* Parse the common frame at b[pos:end] (see parse_frames_doc). Returns 1
 * with *item (a new reference) and *next (the offset after the frame); 0
 * when the frame is incomplete or one the Python parser must handle, with
 * nothing consumed; -1 with an exception set (out of memory). With
 * ``whole``, also 0 when the frame doesn't end exactly at ``end``: checked
 * before the message is built, so a read of several frames costs
 * parse_message() a header, not a message thrown away. */
static int
ripple_parse_one(const unsigned char *b, Py_ssize_t pos, Py_ssize_t end,
                 int masked, Py_ssize_t max_size, int whole, PyObject **item,
                 Py_ssize_t *next)
{
    unsigned int b0, b1;
    Py_ssize_t length, hdr = pos + 2;
    const unsigned char *key = NULL;
    PyObject *out;

    if (end - pos < 2) {
        return 0;
    }
    b0 = b[pos];
    b1 = b[pos + 1];
    length = b1 & 0x7F;
    if (b0 != RIPPLE_FIN_TEXT && b0 != RIPPLE_FIN_BINARY) {
        return 0;  /* control frame, fragment, RSV bit, bad opcode */
    }
    if (((b1 & 0x80) != 0) != masked) {
        return 0;  /* wrong masking: the Python parser fails it */
    }
    if (length == 127) {
        return 0;  /* 64-bit lengths are large: the Python path copies less */
    }
    if (length == 126) {
        if (end - pos < 4) {
            return 0;
        }
        length = ((Py_ssize_t)b[hdr] << 8) | b[hdr + 1];
        if (length < 126) {
            return 0;  /* non-minimal length: a protocol error */
        }
        hdr += 2;
    }
    if (max_size >= 0 && length > max_size) {
        return 0;  /* PayloadTooBig, raised by the Python parser */
    }
    if (masked) {
        if (end - hdr < RIPPLE_MASK_LEN) {
            return 0;
        }
        key = b + hdr;
        hdr += RIPPLE_MASK_LEN;
    }
    if (length > end - hdr) {
        return 0;  /* incomplete */
    }
    if (whole && length != end - hdr) {
        return 0;  /* more after it: the caller parses the read another way */
    }
    if (b0 == RIPPLE_FIN_BINARY) {
        out = PyBytes_FromStringAndSize(masked ? NULL : (const char *)b + hdr, length);
        if (out == NULL) {
            return -1;
        }
        if (masked) {
            ripple_xor_mask(b + hdr, (unsigned char *)PyBytes_AS_STRING(out),
                            length, key);
        }
    }
    else {
        if (masked) {
            unsigned char stack[RIPPLE_STACK_TEXT];
            unsigned char *tmp = stack;
            if (length > RIPPLE_STACK_TEXT) {
                tmp = (unsigned char *)PyMem_Malloc((size_t)length);
                if (tmp == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
            }
            ripple_xor_mask(b + hdr, tmp, length, key);
            out = PyUnicode_DecodeUTF8((const char *)tmp, length, NULL);
            if (tmp != stack) {
                PyMem_Free(tmp);
            }
        }
        else {
            out = PyUnicode_DecodeUTF8((const char *)b + hdr, length, NULL);
        }
        if (out == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                return 0;  /* the Python parser raises InvalidUTF8 (1007) */
            }
            return -1;
        }
    }
    *item = out;
    *next = hdr + length;
    return 1;
}

/* The arguments parse_frames() and parse_message() share. */
static int
ripple_parse_args(PyObject *const *args, Py_ssize_t *end, int *masked,
                  Py_ssize_t *max_size)
{
    *end = PyLong_AsSsize_t(args[0]);
    if (*end == -1 && PyErr_Occurred()) {
        return -1;
    }
    *masked = PyObject_IsTrue(args[1]);
    if (*masked < 0) {
        return -1;
    }
    *max_size = PyLong_AsSsize_t(args[2]);
    if (*max_size == -1 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(parse_frames_doc,
"parse_frames($module, buf, pos, end, masked, max_size, events, /)\n"
"--\n"
"\n"
"Parse the common frames at ``buf[pos:end]``: whole, unfragmented text or\n"
"binary frames with no RSV bit, a 7- or minimal 16-bit length, at most\n"
"``max_size`` bytes (-1: no limit) and masked exactly when ``masked``.\n"
"Append each message to the list ``events`` (str for text, bytes for\n"
"binary) and return the offset of the first byte not consumed: the start\n"
"of an incomplete frame, or of one the caller's parser must handle (any\n"
"other frame, or text that isn't valid UTF-8, so that it raises the right\n"
"error). Never raises for the peer's bytes.");

static PyObject *
ripple_parse_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, end, max_size, next;
    int masked, found;
    PyObject *events, *item;
    const unsigned char *b;

    (void)module;

    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "parse_frames() takes exactly 6 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (ripple_parse_args(args + 2, &end, &masked, &max_size) < 0) {
        return NULL;
    }
    events = args[5];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    if (pos < 0 || end < pos || end > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos and end must lie within the buffer");
        PyBuffer_Release(&view);
        return NULL;
    }
    b = (const unsigned char *)view.buf;

    while ((found = ripple_parse_one(b, pos, end, masked, max_size, 0, &item, &next)) > 0) {
        if (PyList_Append(events, item) < 0) {
            Py_DECREF(item);
            found = -1;
            break;
        }
        Py_DECREF(item);
        pos = next;
    }
    PyBuffer_Release(&view);
    if (found < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(pos);
}

PyDoc_STRVAR(parse_message_doc,
"parse_message($module, buf, end, masked, max_size, /)\n"
"--\n"
"\n"
"The message, str or bytes, when ``buf[:end]`` is exactly one of the\n"
"frames parse_frames() takes; None for anything else (several frames, an\n"
"incomplete one, one the caller's parser must handle), with nothing\n"
"consumed. The usual read holds one message: this returns it without a\n"
"list or an offset to check. Never raises for the peer's bytes.");

static PyObject *
ripple_parse_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t end, max_size, next = 0;
    int masked, found;
    PyObject *item = NULL;

    (void)module;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "parse_message() takes exactly 4 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (ripple_parse_args(args + 1, &end, &masked, &max_size) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    if (end < 0 || end > view.len) {
        PyErr_SetString(PyExc_ValueError, "end must lie within the buffer");
        PyBuffer_Release(&view);
        return NULL;
    }
    found = ripple_parse_one((const unsigned char *)view.buf, 0, end, masked,
                             max_size, 1, &item, &next);
    PyBuffer_Release(&view);
    if (found < 0) {
        return NULL;
    }
    if (found == 0) {
        Py_RETURN_NONE;
    }
    return item;
}

PyDoc_STRVAR(encode_frame_doc,
"encode_frame($module, opcode, payload, /)\n"
"--\n"
"\n"
"Return one unmasked frame with FIN set and no RSV bit: ``opcode`` and\n"
"``payload`` (a str, sent as UTF-8, or a bytes-like object), header and\n"
"payload in one bytes object.");

static PyObject *
ripple_encode_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *tmp = NULL, *result = NULL;
    const char *data;
    Py_ssize_t length, head_len;
    long opcode;
    unsigned char *out;
    int have_view = 0;

    (void)module;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "encode_frame() takes exactly 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    opcode = PyLong_AsLong(args[0]);
    if (opcode == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (opcode < 0 || opcode > 0x0F) {
        PyErr_Format(PyExc_ValueError, "opcode must be 0-15, got %ld", opcode);
        return NULL;
    }
    if (PyUnicode_Check(args[1])) {
        if (PyUnicode_IS_ASCII(args[1])) {
            /* ASCII is its own UTF-8: read the str's storage, no encode. */
            data = (const char *)PyUnicode_DATA(args[1]);
            length = PyUnicode_GET_LENGTH(args[1]);
        }
        else {
            tmp = PyUnicode_AsUTF8String(args[1]);
            if (tmp == NULL) {
                return NULL;
            }
            data = PyBytes_AS_STRING(tmp);
            length = PyBytes_GET_SIZE(tmp);
        }
    }
    else {
        if (ripple_get_bytes_view(args[1], "payload", &view, &tmp) < 0) {
            return NULL;
        }
        have_view = 1;
        data = (const char *)view.buf;
        length = view.len;
    }
    head_len = length < 126 ? 2 : (length < 65536 ? 4 : 10);
    result = PyBytes_FromStringAndSize(NULL, head_len + length);
    if (result != NULL) {
        out = (unsigned char *)PyBytes_AS_STRING(result);
        out[0] = (unsigned char)(0x80 | opcode);
        if (head_len == 2) {
            out[1] = (unsigned char)length;
        }
        else if (head_len == 4) {
            out[1] = 126;
            out[2] = (unsigned char)(length >> 8);
            out[3] = (unsigned char)length;
        }
        else {
            uint64_t n = (uint64_t)length;
            int i;
            out[1] = 127;
            for (i = 9; i >= 2; i--) {
                out[i] = (unsigned char)n;
                n >>= 8;
            }
        }
        if (length > 0) {
            memcpy(out + head_len, data, (size_t)length);
        }
    }
    if (have_view) {
        PyBuffer_Release(&view);
    }
    Py_XDECREF(tmp);
    return result;
}

PyDoc_STRVAR(payload_buffer_doc,
"payload_buffer($module, size, /)\n"
"--\n"
"\n"
"Return ``(payload, view)``: a new bytes object of ``size`` bytes whose\n"
"content is not set yet, and a writable memoryview of it. The caller fills\n"
"it through ``view`` (a socket read straight into the message), releases\n"
"``view``, and only then lets ``payload`` be seen: until then it must hold\n"
"``payload``, which ``view`` does not keep alive.");

static PyObject *
ripple_payload_buffer(PyObject *module, PyObject *arg)
{
    Py_ssize_t size;
    PyObject *payload, *view, *result;

    (void)module;

    size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    payload = PyBytes_FromStringAndSize(NULL, size);
    if (payload == NULL) {
        return NULL;
    }
    view = PyMemoryView_FromMemory(PyBytes_AS_STRING(payload), size, PyBUF_WRITE);
    if (view == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    result = PyTuple_Pack(2, payload, view);
    Py_DECREF(payload);
    Py_DECREF(view);
    return result;
}

PyDoc_STRVAR(mask_inplace_doc,
"mask_inplace($module, buf, mask, /)\n"
"--\n"
"\n"
"XOR the writable buffer ``buf`` with the 4-byte key ``mask``, in place.");

static PyObject *
ripple_mask_inplace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    unsigned char key[RIPPLE_MASK_LEN];

    (void)module;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "mask_inplace() takes exactly 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (ripple_get_key(args[1], key) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) != 0) {
        return NULL;
    }
    /* Word by word, each read before it is written: src == dst is safe. */
    ripple_xor_mask_released((const unsigned char *)view.buf,
                             (unsigned char *)view.buf, view.len, key);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef ripple_speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))ripple_apply_mask,
     METH_FASTCALL, apply_mask_doc},
    {"unmask_frame", (PyCFunction)(void (*)(void))ripple_unmask_frame,
     METH_FASTCALL, unmask_frame_doc},
    {"parse_frames", (PyCFunction)(void (*)(void))ripple_parse_frames,
     METH_FASTCALL, parse_frames_doc},
    {"parse_message", (PyCFunction)(void (*)(void))ripple_parse_message,
     METH_FASTCALL, parse_message_doc},
    {"encode_frame", (PyCFunction)(void (*)(void))ripple_encode_frame,
     METH_FASTCALL, encode_frame_doc},
    {"payload_buffer", (PyCFunction)ripple_payload_buffer, METH_O,
     payload_buffer_doc},
    {"mask_inplace", (PyCFunction)(void (*)(void))ripple_mask_inplace,
     METH_FASTCALL, mask_inplace_doc},
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
"Optional C accelerations for ripple (masking, frame parsing and encoding).");

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
