"""How a bootstrap is started: natively, or through qemu-user for the other architecture."""

from pathlib import Path

import pytest

from login_etl_executor.launch import (
    QEMU_ENV,
    QEMU_LD_PREFIX_ENV,
    LaunchError,
    build_launch,
    child_environment,
)

BOOTSTRAP = Path("/code/bootstrap")


def which_found(name):
    return f"/usr/bin/{name}"


def test_arm64_on_x86_64_runs_through_qemu_with_the_arm64_sysroot():
    launch = build_launch(BOOTSTRAP, "arm64", "x86_64", {}, which=which_found, isdir=lambda p: True)
    assert launch.argv == [
        "/usr/bin/qemu-aarch64-static",
        "-L",
        "/usr/aarch64-linux-gnu",
        "/code/bootstrap",
    ]
    assert launch.emulated


def test_qemu_and_sysroot_come_from_localstacks_environment(tmp_path):
    qemu = tmp_path / "qemu-aarch64"
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    environ = {QEMU_ENV: str(qemu), QEMU_LD_PREFIX_ENV: str(tmp_path)}
    launch = build_launch(BOOTSTRAP, "arm64", "x86_64", environ)
    assert launch.argv == [str(qemu), "-L", str(tmp_path), "/code/bootstrap"]


def test_a_qemu_path_that_is_not_executable_fails_the_start(tmp_path):
    with pytest.raises(LaunchError, match=QEMU_ENV):
        build_launch(BOOTSTRAP, "arm64", "x86_64", {QEMU_ENV: str(tmp_path / "nope")})


@pytest.mark.parametrize(("architecture", "machine"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_native_functions_run_directly(architecture, machine):
    launch = build_launch(BOOTSTRAP, architecture, machine, {}, which=lambda n: None)
    assert launch.argv == ["/code/bootstrap"]
    assert not launch.emulated


def test_a_script_bootstrap_runs_directly_even_for_arm64():
    # qemu-user runs ELF programs only; a script's interpreter is a host program.
    launch = build_launch(BOOTSTRAP, "arm64", "x86_64", {}, bootstrap_is_elf=False)
    assert launch.argv == ["/code/bootstrap"]


def test_ignoring_the_architecture_runs_directly():
    launch = build_launch(BOOTSTRAP, "arm64", "x86_64", {}, ignore_architecture=True)
    assert launch.argv == ["/code/bootstrap"]


def test_missing_qemu_names_the_package_to_install():
    with pytest.raises(LaunchError, match="qemu-user-static"):
        build_launch(BOOTSTRAP, "arm64", "x86_64", {}, which=lambda n: None, isdir=lambda p: True)


def test_missing_sysroot_names_the_package_to_install():
    with pytest.raises(LaunchError, match="libc6-arm64-cross"):
        build_launch(BOOTSTRAP, "arm64", "x86_64", {}, which=which_found, isdir=lambda p: False)


def test_the_child_environment_points_at_the_local_runtime_api_and_code():
    env = child_environment(
        {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 128, "LAMBDA_TASK_ROOT": "/var/task", "X": "y"},
        "127.0.0.1:1234",
        Path("/tmp/code"),
    )
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:1234"
    assert env["LAMBDA_TASK_ROOT"] == "/tmp/code"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["X"] == "y"
    assert "PATH" in env
