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
 *   forge-handle reactor-style: one request line in, one response line out, the instance stays
 *                (a host such as a Worker keeps one instance and calls this per request).
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

/* The environment of this instance as a list of b"NAME=value" (the snapshot holds the build's). */
static PyObject *forge_environ(void) {
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
    return env;
}

static void forge_flush(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    const char *names[] = {"stdout", "stderr"};
    for (int i = 0; i < 2; i++) {
        PyObject *stream = PySys_GetObject(names[i]);
        if (stream) {
            PyObject *r = PyObject_CallMethod(stream, "flush", NULL);
            Py_XDECREF(r);
            PyErr_Clear();
        }
    }
    PyErr_Restore(type, value, tb);
    fflush(stdout);
    fflush(stderr);
}

/* Exit status for an exception that ended the serving function (SystemExit carries its own). */
static int forge_exit_status(void) {
    int code = 1;
    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *codeobj = value ? PyObject_GetAttrString(value, "code") : NULL;
        if (codeobj && PyLong_Check(codeobj)) {
            code = (int)PyLong_AsLong(codeobj);
        } else if (codeobj == NULL || codeobj == Py_None) {
            code = 0;
        } else {
            PyObject_Print(codeobj, stderr, Py_PRINT_RAW);
            fputc('\n', stderr);
        }
        Py_XDECREF(codeobj);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        PyErr_Clear();
    } else {
        PyErr_Print();
    }
    return code;
}

static PyObject *forge_call(const char *function, PyObject *arg) {
    PyObject *module = PyImport_ImportModule("forge_runtime._wasi");
    PyObject *result = NULL;
    if (module) {
        result = arg ? PyObject_CallMethod(module, function, "O", arg) : PyObject_CallMethod(module, function, NULL);
    }
    Py_XDECREF(module);
    return result;
}

/* `_start` of the snapshot: serve stdin until EOF, then exit with its status. */
__attribute__((export_name("forge-serve"))) void forge_serve(void) {
    int code = 0;
    PyObject *env = forge_environ();
    PyObject *result = env ? forge_call("serve_registered", env) : NULL;
    Py_XDECREF(env);
    if (result == NULL) {
        code = forge_exit_status();
    }
    Py_XDECREF(result);
    forge_flush();
    if (code != 0) {
        exit(code);
    }
}

/* Reactor use of the snapshot (a host that keeps the instance): answer ONE request line from
 * stdin on stdout and return 1, or 0 at EOF, or -1 if the runtime itself failed. The first call
 * also takes this instance's environment. Handler exceptions are 500 responses, not failures. */
static int forge_handled = 0;

__attribute__((export_name("forge-handle"))) int forge_handle(void) {
    PyObject *env = Py_None;
    Py_INCREF(env);
    if (!forge_handled) {
        Py_DECREF(env);
        env = forge_environ();
    }
    PyObject *result = env ? forge_call("handle_one", env) : NULL;
    Py_XDECREF(env);
    int n = -1;
    if (result != NULL) {
        n = (int)PyLong_AsLong(result);
        forge_handled = 1;
    } else {
        forge_exit_status();
    }
    Py_XDECREF(result);
    forge_flush();
    return n;
}
