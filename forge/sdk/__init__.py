"""The SDK: a static musl CPython with Nuitka, built once per machine and cached."""
