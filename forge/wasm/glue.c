/* forge's entry points for a pre-initialised (wizer) wasm32-wasi module.
 *
 * The module is a normal WASI command: `_start` runs Nuitka's main(), which initialises CPython,
 * imports the workload and serves stdin (forge_runtime._wasi.main). Two more exports split that
 * in two for wizer:
 *
 *   forge-init   run at build time by wizer: C constructors, then main() with --forge-preinit.
 *                The workload is imported and registered; main() returns without finalising
 *                (see nuitka-wasm-preinit.patch), and wizer snapshots memory and globals.
 *   forge-serve  renamed to `_start` in the snapshot: the interpreter is already up, so this only
 *                re-reads the environment (the snapshot holds the build's, which was empty) and
 *                calls forge_runtime._wasi.serve_registered(environ), which answers stdin until EOF.
 */
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
#include <wasi/libc-environ.h>

extern char **environ;

extern int forge_wasi_preinit;
extern int main(int argc, char **argv);
extern void __wasm_call_ctors(void);

static char forge_arg0[] = "app";
static char forge_arg1[] = "--forge-preinit";
static char *forge_argv[] = {forge_arg0, forge_arg1, NULL};

__attribute__((export_name("forge-init"))) void forge_init(void) {
    __wasm_call_ctors();
    forge_wasi_preinit = 1;
    int code = main(2, forge_argv);
    forge_wasi_preinit = 0;
    fflush(stdout);
    fflush(stderr);
    if (code != 0) {
        /* wizer reports the failed initialisation; stderr has the Python traceback */
        exit(code);
    }
}

__attribute__((export_name("forge-serve"))) void forge_serve(void) {
    int code = 0;
    __wasilibc_deinitialize_environ();
    __wasilibc_initialize_environ();
    PyObject *env = PyList_New(0);
    for (char **e = environ; env != NULL && e != NULL && *e != NULL; e++) {
        PyObject *item = PyBytes_FromString(*e);
        if (item == NULL || PyList_Append(env, item) != 0) {
            Py_XDECREF(item);
            Py_CLEAR(env);
            break;
        }
        Py_DECREF(item);
    }
    PyObject *module = env ? PyImport_ImportModule("forge_runtime._wasi") : NULL;
    PyObject *result = module ? PyObject_CallMethod(module, "serve_registered", "O", env) : NULL;
    Py_XDECREF(env);
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject *codeobj = value ? PyObject_GetAttrString(value, "code") : NULL;
            if (codeobj && PyLong_Check(codeobj)) {
                code = (int)PyLong_AsLong(codeobj);
            } else {
                if (codeobj && codeobj != Py_None) {
                    PyObject_Print(codeobj, stderr, Py_PRINT_RAW);
                    fputc('\n', stderr);
                }
                code = (codeobj && codeobj != Py_None) ? 1 : 0;
            }
            Py_XDECREF(codeobj);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        } else {
            PyErr_Print();
            code = 1;
        }
    }
    Py_XDECREF(result);
    Py_XDECREF(module);
    /* flush Python's buffered streams, then C's */
    PyObject *out = PySys_GetObject("stdout");
    if (out) {
        PyObject *r = PyObject_CallMethod(out, "flush", NULL);
        Py_XDECREF(r);
    }
    PyObject *err = PySys_GetObject("stderr");
    if (err) {
        PyObject *r = PyObject_CallMethod(err, "flush", NULL);
        Py_XDECREF(r);
    }
    PyErr_Clear();
    fflush(stdout);
    fflush(stderr);
    if (code != 0) {
        exit(code);
    }
}
