"""Every way forge can fail on bad input or a bad environment, one class per cause.

Each class has its own exit code so CI scripts can tell causes apart, and its message is one
paragraph that names the cause and the fix. The CLI prints the message (never a traceback) and
exits with the code. Codes are stable: add new ones, never renumber.
"""

from __future__ import annotations


class ForgeError(Exception):
    exit_code = 1
    title = "forge failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- environment and set-up (10-19) ---------------------------------------------------------------
class UnknownPythonVersion(ForgeError):
    exit_code = 10
    title = "unknown Python version"


class RequiresPythonUnsatisfiable(ForgeError):
    exit_code = 19
    title = "no supported Python satisfies requires-python"


class SourceChecksumMismatch(ForgeError):
    exit_code = 11
    title = "source checksum mismatch"


class SourceUnavailable(ForgeError):
    exit_code = 12
    title = "source tarball unavailable"


class CompilerNotFound(ForgeError):
    exit_code = 13
    title = "musl C compiler not found"


class SdkBuildFailed(ForgeError):
    exit_code = 14
    title = "SDK build failed"


class SdkMissing(ForgeError):
    exit_code = 15
    title = "no SDK built yet"


class SdkIncomplete(ForgeError):
    exit_code = 18
    title = "SDK lacks a part forge needs"


class DockerUnavailable(ForgeError):
    exit_code = 16
    title = "Docker engine unavailable"


class ConfigError(ForgeError):
    exit_code = 17
    title = "invalid configuration"


# --- the workload (20-29) ----------------------------------------------------------------------------
class WorkloadNotFound(ForgeError):
    exit_code = 20
    title = "workload not found"


class WorkloadSyntaxError(ForgeError):
    exit_code = 21
    title = "syntax error in workload"


class UnresolvedImport(ForgeError):
    exit_code = 22
    title = "import cannot be resolved"


class NativeExtensionDependency(ForgeError):
    exit_code = 23
    title = "dependency's extension modules cannot be linked"


class DependencyNeedsOtherPython(ForgeError):
    exit_code = 28
    title = "a dependency's Requires-Python excludes the SDK's Python"


class DependencyInstallFailed(ForgeError):
    exit_code = 24
    title = "dependency install failed"


class CompileFailed(ForgeError):
    exit_code = 25
    title = "compilation failed"


class NotStatic(ForgeError):
    exit_code = 26
    title = "binary is not fully static"


class UnsupportedOnTarget(ForgeError):
    exit_code = 27
    title = "module unavailable on this target"


class StartupCheckFailed(ForgeError):
    """The linked binary was started once (forge/verify.py) and crashed or never answered."""
    exit_code = 29
    title = "the built binary does not start"


# --- outputs (30-39) ----------------------------------------------------------------------------------
class OutputPathConflict(ForgeError):
    exit_code = 30
    title = "output path is in the way"


class InvalidImage(ForgeError):
    exit_code = 31
    title = "not a forge image"


class DaemonRejectedImage(ForgeError):
    exit_code = 32
    title = "Docker engine refused the image"


# --- registries and deployment (40-49) ------------------------------------------------------------
class RegistryUnreachable(ForgeError):
    exit_code = 40
    title = "registry unreachable"


class RegistryAuthFailed(ForgeError):
    exit_code = 41
    title = "registry authentication failed"


class RegistryError(ForgeError):
    exit_code = 42
    title = "registry refused the push"


class InvalidReference(ForgeError):
    exit_code = 43
    title = "invalid image reference"


class DeployConfigError(ForgeError):
    exit_code = 44
    title = "invalid deployment settings"


class UserFileChanged(ForgeError):
    exit_code = 45
    title = "refusing to overwrite a changed file"


class InsecureRegistryRefused(ForgeError):
    exit_code = 46
    title = "plain-HTTP registry refused"


class CredentialHelperFailed(ForgeError):
    exit_code = 47
    title = "Docker credential helper failed"


class ImageUnsuitable(ForgeError):
    exit_code = 48
    title = "image unsuitable for the deployment target"


class BenchFailed(ForgeError):
    exit_code = 50
    title = "benchmark failed"


class BenchDependencyMissing(ForgeError):
    exit_code = 51
    title = "forge bench needs its extra"


# --- forge itself (70: sysexits' EX_SOFTWARE) ------------------------------------------------------
class InternalError(ForgeError):
    """Not raised by forge's code: the CLI wraps an unexpected exception in it (a bug in forge)."""
    exit_code = 70
    title = "internal error"


# --- the wasm target (80-89) -----------------------------------------------------------------------
class WasmToolchainUnavailable(ForgeError):
    exit_code = 80
    title = "wasm toolchain unavailable"


class WasmPreinitFailed(ForgeError):
    exit_code = 81
    title = "wasm pre-initialisation failed"


class WasmModuleBroken(ForgeError):
    exit_code = 82
    title = "compiled wasm module does not run"


class WorkersModuleTooLarge(ForgeError):
    exit_code = 83
    title = "wasm module too large for Workers"


# --- dependencies' native extension modules (90-99; forge/extensions) ----------------------------
class NativeLibraryMissing(ForgeError):
    """An extension module asks for a C library (-lfoo, or its header) the SDK does not have."""
    exit_code = 90
    title = "dependency needs a C library forge does not have"


class RustExtensionDependency(ForgeError):
    """maturin / setuptools-rust: needs Rust with the x86_64-unknown-linux-musl target."""
    exit_code = 91
    title = "dependency is a Rust extension"


def all_error_classes() -> list[type[ForgeError]]:
    """Every concrete error class (used by tests to check that exit codes are unique)."""
    seen, todo = [], [ForgeError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            seen.append(sub)
            todo.append(sub)
    return seen
