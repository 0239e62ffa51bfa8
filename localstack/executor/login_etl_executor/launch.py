"""What command line and environment start a function's bootstrap on this host.

An arm64 function on an x86_64 host (and the reverse) runs through qemu-user; everything else runs
directly. Pure functions of their inputs, so the choice is unit-tested without starting anything.
"""

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

QEMU_ENV = "LAMBDA_LOCAL_EXECUTOR_QEMU"
QEMU_LD_PREFIX_ENV = "LAMBDA_LOCAL_EXECUTOR_QEMU_LD_PREFIX"

# Lambda architecture -> (the machine names a host reports for it, qemu binary, Debian sysroot,
# the Debian packages that provide them).
_FOREIGN = {
    "arm64": (
        {"aarch64", "arm64"},
        "qemu-aarch64-static",
        "/usr/aarch64-linux-gnu",
        "qemu-user-static",
        "libc6-arm64-cross",
    ),
    "x86_64": (
        {"x86_64", "amd64"},
        "qemu-x86_64-static",
        "/usr/x86_64-linux-gnu",
        "qemu-user-static",
        "libc6-amd64-cross",
    ),
}

# ELF e_machine values, to tell a native program from a script (qemu-user runs only ELF files).
_ELF_MAGIC = b"\x7fELF"


class LaunchError(Exception):
    """The host cannot run this function (not the function's fault): a setup problem to fix."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    emulated: bool


def host_machine() -> str:
    return platform.machine().lower()


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == _ELF_MAGIC
    except OSError:
        return False


def build_launch(
    bootstrap: Path,
    architecture: str,
    machine: str,
    environ: dict[str, str],
    bootstrap_is_elf: bool = True,
    which=shutil.which,
    isdir=os.path.isdir,
    ignore_architecture: bool = False,
) -> Launch:
    """The argv that runs `bootstrap` for a function of `architecture` on a `machine` host.

    `environ` is LocalStack's own environment (where the qemu overrides live), not the function's.
    """
    spec = _FOREIGN.get(architecture)
    native = spec is None or machine in spec[0] or ignore_architecture
    # A script's interpreter is a host program: qemu-user cannot run the script itself.
    if native or not bootstrap_is_elf:
        return Launch([str(bootstrap)], emulated=False)

    _, qemu_default, sysroot_default, qemu_package, sysroot_package = spec
    qemu_setting = environ.get(QEMU_ENV) or qemu_default
    qemu = which(qemu_setting) if os.sep not in qemu_setting else qemu_setting
    if not qemu or not os.access(qemu, os.X_OK):
        raise LaunchError(
            f"{architecture} function on this {machine} host needs {qemu_setting} (qemu-user), which "
            f"was not found: install the Debian package {qemu_package}, or set {QEMU_ENV} to its path"
        )
    sysroot = environ.get(QEMU_LD_PREFIX_ENV) or sysroot_default
    if not isdir(sysroot):
        raise LaunchError(
            f"{architecture} function on this {machine} host needs the {architecture} C library under "
            f"{sysroot}, which does not exist: install the Debian package {sysroot_package}, or set "
            f"{QEMU_LD_PREFIX_ENV} to the sysroot"
        )
    return Launch([qemu, "-L", sysroot, str(bootstrap)], emulated=True)


def child_environment(
    lambda_env: dict[str, object], runtime_api: str, task_root: Path
) -> dict[str, str]:
    """The function's environment: what LocalStack hands the init, adjusted for a local process.

    LocalStack's own process environment is deliberately not inherited (it would leak settings
    such as a developer's DATABASE_URL into the function and hide a missing function setting);
    only PATH and the locale come from the host, so scripts and their interpreters are found.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    # LocalStack passes some values as ints (memory size, timeout).
    env.update({key: str(value) for key, value in lambda_env.items() if value is not None})
    env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
    # LocalStack says /var/task (the container's path); the code is elsewhere here.
    env["LAMBDA_TASK_ROOT"] = str(task_root)
    return env
