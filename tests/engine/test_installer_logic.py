"""The engine installer's logic without QGIS: which interpreter it picks on each platform (fake
install layouts made of real files), the lock files, the environment's state, one install at a time,
streaming and Cancel of child processes, pip's error messages. The real install is in
tests/plugin/test_installer.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sketch_search_plugin import base_python as bp
from sketch_search_plugin import installer

posix_only = pytest.mark.skipif(os.name == "nt", reason="fake interpreters are shell scripts")


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def running(platform, executable, base_exec_prefix="", exec_prefix="", base_executable="", version=(3, 12),
            environ=None) -> bp.RunningPython:
    return bp.RunningPython(platform=platform, executable=str(executable), base_executable=str(base_executable),
                            exec_prefix=str(exec_prefix or base_exec_prefix), base_exec_prefix=str(base_exec_prefix),
                            version=version, environ=environ or {})


# ------------------------------------------------------------------ candidates per platform

def test_linux_qgis_binary_uses_its_own_python_and_never_path(tmp_path, monkeypatch):
    qgis = touch(tmp_path / "usr/bin/qgis")
    own = touch(tmp_path / "usr/bin/python3.11")
    touch(tmp_path / "usr/local/bin/python3.13")
    on_path = touch(tmp_path / "pyenv/shims/python3")
    monkeypatch.setenv("PATH", str(on_path.parent))
    found = bp.candidates(running("linux", qgis, tmp_path / "usr", version=(3, 11)), root=tmp_path)
    assert found[0] == own
    assert tmp_path / "usr/local/bin/python3.13" in found  # a system fallback
    assert on_path not in found and qgis not in found


def test_venv_python_prefers_the_base_interpreter(tmp_path):
    base = touch(tmp_path / "usr/bin/python3.11")
    venv_python = tmp_path / "venv/bin/python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(base)
    found = bp.candidates(running("linux", venv_python, tmp_path / "usr", exec_prefix=tmp_path / "venv",
                                  base_executable=base, version=(3, 11)), root=tmp_path / "nothing")
    assert found == [base]  # the venv's symlink is the same file: tried once


def test_windows_osgeo4w_then_python_org(tmp_path):
    root = tmp_path / "OSGeo4W"
    qgis = touch(root / "bin/qgis-bin.exe")
    own = touch(root / "apps/Python312/python.exe")
    local = tmp_path / "Users/me/AppData/Local"
    user_python = touch(local / "Programs/Python/Python313/python.exe")
    found = bp.candidates(running("win32", qgis, root / "apps/Python312",
                                  environ={"LOCALAPPDATA": str(local)}), root=tmp_path)
    assert found == [own, user_python]


def test_windows_standalone_installer_finds_apps_python_from_the_qgis_binary(tmp_path):
    root = tmp_path / "Program Files/QGIS 3.34.1"
    qgis = touch(root / "bin/qgis-bin.exe")
    old = touch(root / "apps/Python39/python.exe")
    new = touch(root / "apps/Python312/python.exe")
    found = bp.candidates(running("win32", qgis, version=(3, 12)), root=tmp_path)
    assert found == [new, old]  # newest first; the version check rejects 3.9 later


def test_macos_bundle_layouts(tmp_path):
    contents = tmp_path / "Applications/QGIS.app/Contents"
    qgis = touch(contents / "MacOS/QGIS")
    framework = touch(contents / "Frameworks/Python.framework/Versions/3.12/bin/python3.12")
    found = bp.candidates(running("darwin", qgis, contents / "Frameworks/Python.framework/Versions/3.12"),
                          root=tmp_path)
    assert found[0] == framework and qgis not in found

    older = tmp_path / "old/QGIS-LTR.app/Contents"
    qgis = touch(older / "MacOS/QGIS")
    bundled = touch(older / "MacOS/bin/python3")
    found = bp.candidates(running("darwin", qgis, older / "MacOS/lib/nothing", version=(3, 10)), root=tmp_path)
    assert found[0] == bundled


def test_macos_system_pythons_but_not_the_xcode_stub(tmp_path):
    touch(tmp_path / "usr/bin/python3")  # the Xcode command line tools stub
    brew = touch(tmp_path / "opt/homebrew/bin/python3.12")
    org = touch(tmp_path / "Library/Frameworks/Python.framework/Versions/3.13/bin/python3.13")
    found = bp.candidates(running("darwin", tmp_path / "QGIS"), root=tmp_path)
    assert found == [org, brew]


def test_only_files_named_like_python_are_ever_run(tmp_path):
    qgis = touch(tmp_path / "bin/qgis.exe")
    found = bp.candidates(running("win32", qgis, tmp_path / "bin", base_executable=qgis), root=tmp_path)
    assert found == []


# ------------------------------------------------------------------ probing and choosing

def fake_python(path: Path, version=(3, 12, 1), stderr: str = "", code: int = 0) -> Path:
    out = json.dumps({"version": list(version), "executable": str(path)})
    return touch(path, f"#!/bin/sh\necho '{out}'\necho '{stderr}' >&2\nexit {code}\n")


@posix_only
def test_probe_runs_the_candidate_and_checks_version_and_venv(tmp_path):
    assert bp.probe(fake_python(tmp_path / "a/python3.12")).version == (3, 12, 1)
    with pytest.raises(ValueError, match="3.9.18.*3.10 to 3.13"):
        bp.probe(fake_python(tmp_path / "b/python3.9", (3, 9, 18)))
    with pytest.raises(ValueError, match="venv/ensurepip"):
        bp.probe(fake_python(tmp_path / "c/python3", stderr="ModuleNotFoundError: No module named 'ensurepip'",
                             code=1))


@posix_only
def test_find_base_python_skips_broken_candidates_and_explains_when_none_works(tmp_path):
    old = fake_python(tmp_path / "usr/bin/python3.13", (3, 9, 2))
    good = fake_python(tmp_path / "usr/local/bin/python3.12", (3, 12, 3))
    qgis = touch(tmp_path / "usr/bin/qgis")
    found = bp.find_base_python(running=running("linux", qgis, tmp_path / "nowhere"), root=tmp_path)
    assert found == bp.Interpreter(str(good), (3, 12, 3))
    good.unlink()
    with pytest.raises(bp.NoPythonFound) as err:
        bp.find_base_python(running=running("linux", qgis, tmp_path / "nowhere"), root=tmp_path)
    assert "sudo apt install python3-venv" in str(err.value) and str(old) in str(err.value)
    assert "\n" not in str(err.value)


def test_preferred_interpreter_is_tried_first(tmp_path):
    calls = []

    def probe(path):
        calls.append(path)
        return bp.Interpreter(str(path), (3, 11, 0))

    found = bp.find_base_python(preferred=str(tmp_path / "mine/python3"), run_probe=probe,
                                running=running("linux", tmp_path / "qgis"), root=tmp_path)
    assert found.path == str(tmp_path / "mine/python3") and len(calls) == 1


def test_real_interpreter_of_this_machine():
    """Whatever runs the tests, the pick is a real interpreter of a supported version with venv."""
    found = bp.find_base_python()
    assert bp.is_supported(found.version)
    out = subprocess.run([found.path, "-I", "-c", "import sys; print(sys.prefix == sys.base_prefix)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True"  # a base interpreter, not a virtual environment


def test_clean_environment_drops_what_would_leak_qgis_packages_into_the_child():
    env = bp.clean_environment({"PYTHONHOME": "C:/OSGeo4W/apps/Python39", "PYTHONPATH": "x", "PATH": "p",
                                "PIP_USER": "1", "GDAL_DATA": "g", "PIP_INDEX_URL": "https://mirror"})
    assert env["PATH"] == "p" and env["PIP_INDEX_URL"] == "https://mirror"  # the user's pip config stays
    assert not {"PYTHONHOME", "PYTHONPATH", "PIP_USER", "GDAL_DATA"} & set(env)
    assert env["PYTHONNOUSERSITE"] == "1"


# ------------------------------------------------------------------ flavours, index, locks

def test_flavour_choice(monkeypatch, tmp_path):
    assert installer.choose_flavour("auto", gpu=True) == "torch"
    assert installer.choose_flavour("auto", gpu=False) == "onnx"
    assert installer.choose_flavour("ONNX", gpu=True) == "onnx"
    assert installer.choose_flavour("torch", gpu=False) == "torch"
    with pytest.raises(ValueError):
        installer.choose_flavour("cuda")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert installer.nvidia_gpu_present() is False  # no nvidia-smi at all
    if os.name != "nt":
        smi = touch(tmp_path / "nvidia-smi", "#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\n")
        assert installer.choose_flavour("auto") == "torch"
        touch(smi, "#!/bin/sh\necho 'NVIDIA-SMI has failed: no driver'\nexit 9\n")
        assert installer.choose_flavour("auto") == "onnx"


def test_index_setting_becomes_pip_arguments():
    assert installer.index_arguments("") == []
    assert installer.index_arguments(" https://mirror/simple  https://download.pytorch.org/whl/cpu ") == [
        "--index-url", "https://mirror/simple", "--extra-index-url", "https://download.pytorch.org/whl/cpu"]


def pins(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].split(";")[0].strip().rstrip("\\").strip()
        if "==" in line:
            name, version = line.split("==")
            out.setdefault(name.strip().lower(), set()).add(version.strip())
    return out


@pytest.mark.parametrize("flavour", installer.FLAVOURS)
def test_lock_files_pin_everything_with_hashes(flavour):
    lock = installer.lock_path(flavour)
    text = lock.read_text()
    entries = [e for e in text.split("\n") if e and not e.startswith((" ", "#"))]
    assert len(entries) >= 10
    assert "--index-url" not in text and "--extra-index-url" not in text  # the index is a setting
    for entry in entries:
        assert "==" in entry, entry
        body = text.split(entry, 1)[1].split("\n")[1]
        assert body.strip().startswith("--hash=sha256:"), f"{entry} has no hash"
    wanted = pins(lock.with_suffix(".in"))
    got = pins(lock)
    for name, versions in wanted.items():
        assert got.get(name) == versions, f"{name}: lock {got.get(name)} != input {versions}"


def test_onnx_lock_has_no_pytorch_and_torch_lock_has_the_pair():
    onnx = {n.lower() for n in installer.lock_packages(installer.lock_path("onnx"))}
    torch = {n.lower() for n in installer.lock_packages(installer.lock_path("torch"))}
    assert {"onnxruntime", "numpy", "rasterio", "shapely", "fiona", "pillow", "affine", "attrs"} <= onnx
    assert not {n for n in onnx if n.startswith(("torch", "nvidia", "triton", "timm", "sympy"))}
    assert {"torch", "torchvision", "timm", "safetensors"} <= torch
    # one numpy for both, with wheels for Python 3.10 to 3.13
    assert pins(installer.lock_path("onnx"))["numpy"] == pins(installer.lock_path("torch"))["numpy"]


def test_lock_hash_ignores_line_endings(tmp_path):
    unix, windows = tmp_path / "a.txt", tmp_path / "b.txt"
    unix.write_bytes(b"numpy==2.2.6 \\\n    --hash=sha256:00\n")
    windows.write_bytes(b"numpy==2.2.6 \\\r\n    --hash=sha256:00\r\n")
    assert installer.lock_sha256(unix) == installer.lock_sha256(windows)


# ------------------------------------------------------------------ the environment's state

def fake_env(env_dir: Path, flavour="onnx", sha=None) -> Path:
    touch(installer.env_python(env_dir))
    (env_dir / installer.MARKER).write_text(json.dumps({
        "flavour": flavour, "lock_sha256": sha or installer.lock_sha256(installer.lock_path(flavour)),
        "python_version": "3.11.2"}))
    return env_dir


def test_environment_state(tmp_path):
    env_dir = tmp_path / "sketch_search_env"
    assert installer.environment_state(env_dir).status == "missing"
    touch(installer.env_python(env_dir))
    assert installer.environment_state(env_dir).status == "incomplete"  # no marker: never "ready"
    fake_env(env_dir, sha="0" * 64)
    state = installer.environment_state(env_dir)
    assert state.status == "outdated" and state.usable
    fake_env(env_dir)
    state = installer.environment_state(env_dir)
    assert (state.status, state.flavour, state.usable) == ("ready", "onnx", True)
    assert installer.installed_python(env_dir) == installer.env_python(env_dir)


def test_engine_python_order(tmp_path, monkeypatch):
    env_dir = fake_env(tmp_path / "env")
    settings = {}
    monkeypatch.setattr(installer, "setting", lambda key, default="": settings.get(key, default))
    found = installer.engine_python(environ={}, env_dir=env_dir)
    assert found.path == str(installer.env_python(env_dir)) and "installer" in found.source
    settings[installer.SETTING_PYTHON] = "/opt/mine/python"
    assert installer.engine_python(environ={}, env_dir=env_dir).path == "/opt/mine/python"
    found = installer.engine_python(environ={"SKETCH_SEARCH_PYTHON": "/x/python"}, env_dir=env_dir)
    assert (found.path, found.source) == ("/x/python", "the environment variable SKETCH_SEARCH_PYTHON")
    settings.clear()
    assert installer.engine_python(environ={}, env_dir=tmp_path / "none") is None


# ------------------------------------------------------------------ one install at a time

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from sketch_search_plugin.installer import InstallLock
    with InstallLock(Path(sys.argv[2])):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_one_install_at_a_time_in_this_process_and_across_processes(tmp_path):
    env_dir = tmp_path / "profile/python/sketch_search_env"
    with installer.InstallLock(env_dir):
        assert installer.install_running()
        with pytest.raises(installer.InstallBusy, match="this QGIS window"):
            installer.InstallLock(env_dir).__enter__()
    assert not installer.install_running()

    root = str(Path(installer.__file__).parents[1])
    other = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, root, str(env_dir)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        with pytest.raises(installer.InstallBusy, match=f"another QGIS window \\(process {other.pid}\\)"):
            with installer.InstallLock(env_dir):
                pass
        assert not installer.install_running()  # the refused attempt released its own lock
    finally:
        other.kill()  # as a crash would: the OS frees the file lock
        other.wait()
    with installer.InstallLock(env_dir):
        pass


# ------------------------------------------------------------------ child processes: output and Cancel

def job(tmp_path, cancelled=lambda: False):
    lines, steps, progress = [], [], []
    install = installer._Install(tmp_path / "env", "onnx", lines.append, steps.append,
                                 lambda *a: progress.append(a), cancelled)
    return install, lines, steps, progress


def test_pip_output_becomes_steps_progress_and_log(tmp_path):
    script = ("print('Collecting numpy==2.2.6 (from -r x (line 3))'); "
              "print('  Downloading numpy-2.2.6-cp311-manylinux.whl (16.8 MB)'); "
              "print('Progress 0 of 16800000'); print('Progress 16800000 of 16800000'); "
              "print('Installing collected packages: numpy')")
    install, lines, steps, progress = job(tmp_path)
    (tmp_path / "env").parent.mkdir(exist_ok=True)
    install.run([sys.executable, "-c", script], "pip", pip_output=True)
    assert not any(line.startswith("Progress") for line in lines)
    assert (16800000, 16800000, "numpy-2.2.6-cp311-manylinux.whl") in progress
    assert steps == [f"{installer.STEP_DOWNLOAD}: numpy", f"{installer.STEP_INSTALL} (this can take a minute)"]
    assert lines[0].startswith("$ ") and "Collecting numpy==2.2.6 (from -r x (line 3))" in lines


@posix_only
def test_cancel_stops_the_child_and_what_it_started_quickly(tmp_path):
    script = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              "print('grandchild', child.pid, flush=True); time.sleep(120)")
    state = {"cancel": False}
    install, lines, _, _ = job(tmp_path, lambda: state["cancel"])

    def log(line):
        lines.append(line)
        if line.startswith("grandchild"):
            state["cancel"] = True

    install.log = log
    started = time.monotonic()
    with pytest.raises(installer.InstallCancelled):
        install.run([sys.executable, "-c", script], "pip")
    assert time.monotonic() - started < 10
    grandchild = int([line for line in lines if line.startswith("grandchild")][0].split()[1])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{grandchild}").exists():
        time.sleep(0.05)
    status = Path(f"/proc/{grandchild}/status")
    assert not status.exists() or "zombie" in status.read_text()


def test_a_failing_child_gives_one_line_with_pips_error(tmp_path):
    script = "print('Collecting x'); print('ERROR: THESE PACKAGES DO NOT MATCH THE HASHES'); raise SystemExit(1)"
    install, *_ = job(tmp_path)
    with pytest.raises(installer.InstallFailed) as err:
        install.run([sys.executable, "-c", script], "Installing the packages")
    message = str(err.value)
    assert message.startswith("Installing the packages failed (exit status 1): THESE PACKAGES DO NOT MATCH")
    assert "proxy or package mirror" in message and "\n" not in message


def test_failure_hints():
    assert "cannot be reached" in installer.failure_message(
        "pip", 1, ["WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')",
                   "ERROR: Could not install requirement numpy"])
    assert "no file of it for this platform" in installer.failure_message(
        "pip", 1, ["ERROR: Could not find a version that satisfies the requirement torch==2.14.1",
                   "ERROR: No matching distribution found for torch==2.14.1"])


# ------------------------------------------------------------------ a whole install that stops half-way

def test_cancel_half_way_removes_the_new_environment_and_keeps_the_old(tmp_path):
    """A real venv is made, then Cancel arrives while pip runs: the old environment stays as it was."""
    env_dir = fake_env(tmp_path / "python/sketch_search_env")
    before = (env_dir / installer.MARKER).read_text()
    steps = []
    with pytest.raises(installer.InstallCancelled):
        installer.install_environment(env_dir, "onnx", step=steps.append, check=None,
                                      is_cancelled=lambda: installer.STEP_PIP in steps)
    assert steps[-1] == installer.STEP_PIP
    assert (env_dir / installer.MARKER).read_text() == before
    assert sorted(p.name for p in env_dir.parent.iterdir()) == [
        "sketch_search_env", "sketch_search_env-install.log", "sketch_search_env.lock"]
    assert "Stopped: Install cancelled." in installer.install_log_path(env_dir).read_text()
    assert not installer.install_running()


def test_unreachable_index_fails_with_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's local package folders: off
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    env_dir = tmp_path / "python/sketch_search_env"
    with pytest.raises(installer.InstallFailed) as err:
        installer.install_environment(env_dir, "onnx", index_url=(tmp_path / "no-index").as_uri(), check=None)
    assert str(err.value).startswith("Updating pip failed (exit status 1):") and "\n" not in str(err.value)
    assert installer.environment_state(env_dir).status == "missing"
    assert not env_dir.with_name("sketch_search_env.partial").exists()


def test_a_finished_environment_replaces_the_old_one(tmp_path):
    final = fake_env(tmp_path / "sketch_search_env", sha="0" * 64)
    staging = fake_env(tmp_path / "sketch_search_env.partial")
    installer._move_into_place(staging, final)
    assert installer.environment_state(final).status == "ready"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sketch_search_env"]
