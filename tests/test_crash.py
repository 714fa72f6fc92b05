"""Crash safety of run directories: a real ``medtune train`` is SIGKILLed while it saves a checkpoint and
while it saves the adapter, and a full disk or read-only output ends in one line, not a traceback.

The kill lands at the most dangerous moment deterministically: ``MEDTUNE_TEST_PAUSE_IN_SAVE=<name>``
makes the process stop itself (SIGSTOP) when everything of ``<name>`` is written but not yet committed
(``core.atomic``); the test waits for the stop, then kills. Mechanics on the tiny random model.
The killed processes are forks of the test process (POSIX only)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from helpers import REPO, tiny_overrides

from medtune.core import atomic
from medtune.core.config import dump_config, load_config

FIXTURE = REPO / "tests" / "fixtures" / "qa_small.jsonl"


def in_child(work, pause: str) -> int:
    """Fork: the child runs ``work()`` with the pause hook set and never returns into pytest."""
    pid = os.fork()
    if pid == 0:
        try:
            os.environ[atomic.PAUSE_ENV] = pause
            work()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)  # reaching here means it never paused
    return pid


def kill_when_paused(pid: int, timeout: float = 300) -> None:
    """Wait until the process has stopped itself at the pause point, then SIGKILL it."""
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WUNTRACED | os.WNOHANG)
        assert not done or os.WIFSTOPPED(status), f"ended (status {status}) before the pause point"
        if done:
            break
        assert time.time() < deadline, "never reached the pause point"
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def visible(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")} if directory.is_dir() else set()


def test_killed_in_checkpoint_save_then_in_adapter_save_then_resumed(tmp_path, tiny_model_dir):
    """What `medtune train [--resume]` runs (``run_one``), in forked processes that are SIGKILLed (a fork
    shares the test's imports: a fresh `python -m medtune` spends ~7 s CPU importing torch/transformers/trl)."""
    from peft import PeftConfig
    from safetensors.torch import load_file

    from medtune.training.pipeline import run_one

    cfg = load_config(None, tiny_overrides(tmp_path, "killed") + [
        f"model.name={tiny_model_dir}", f"data.sources=[{{kind: generic, path: {FIXTURE}}}]", "train.report_to=[]",
        "train.max_steps=2", "train.save_steps=1", "train.save_total_limit=1", "train.threads=1"])
    run = tmp_path / "killed"
    checkpoints = run / "checkpoints"

    def train(resume: bool):
        return lambda: run_one(cfg, keep_data=True, evaluate=False, resume=resume)

    # 1. killed while checkpoint-2 is written: checkpoint-1 (the old one) is whole, checkpoint-2 is invisible
    kill_when_paused(in_child(train(resume=False), pause="checkpoint-2"))
    assert visible(checkpoints) == {"checkpoint-1", "README.md"}, os.listdir(checkpoints)
    old = checkpoints / "checkpoint-1"
    assert json.loads((old / "trainer_state.json").read_text())["global_step"] == 1
    assert load_file(old / "adapter_model.safetensors")
    assert (checkpoints / ".partial" / "checkpoint-2" / "optimizer.pt").is_file(), "paused after writing it all"

    # 2. resumed from checkpoint-1, killed while the adapter is written: checkpoint-2 (the new one) is whole,
    #    the final name holds no partial adapter
    kill_when_paused(in_child(train(resume=True), pause="adapter"))
    assert visible(checkpoints) == {"checkpoint-2", "README.md"}, os.listdir(checkpoints)  # 1 rotated out after 2 landed
    assert json.loads((checkpoints / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert not (run / "adapter").exists()
    assert (run / ".adapter.partial" / "adapter_model.safetensors").is_file()

    # 3. --resume finishes: a whole adapter that loads, no leftovers
    train(resume=True)()
    assert PeftConfig.from_pretrained(run / "adapter").r == cfg.lora.r
    assert load_file(run / "adapter" / "adapter_model.safetensors")
    assert json.loads((run / "manifest.json").read_text())["train"]["resumed_from"].endswith("checkpoint-2")
    assert not list(run.rglob(".*")), "temporary files left behind"


def test_killed_replacing_a_directory_leaves_the_old_one_whole(tmp_path):
    """The swap of an existing directory (a second save of an adapter or merged model): old stays until new is whole."""
    target = tmp_path / "merged"
    target.mkdir()
    (target / "weights").write_bytes(b"old")

    def save():
        with atomic.atomic_dir(target) as tmp:
            (tmp / "weights").write_bytes(b"new" * 1000)
            atomic.write_text(tmp / "config.json", "{}")

    kill_when_paused(in_child(save, pause="merged"))
    assert (target / "weights").read_bytes() == b"old" and visible(target) == {"weights"}
    save()
    assert (target / "weights").read_bytes() == b"new" * 1000 and visible(target) == {"weights", "config.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"], "staging and old copies cleared"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    atomic.write_json(path, {"v": 1})
    with pytest.raises(ValueError), atomic.atomic_file(path) as f:
        f.write('{"v": 2, "half')
        raise ValueError("writer failed mid-way")
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["report.json"]


def test_disk_full_is_an_enospc_naming_the_path(tmp_path):
    """/dev/full fails every write with ENOSPC; a file written through it reports the final path."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    path = tmp_path / "train.jsonl"
    with pytest.raises(OSError) as info, atomic.atomic_file(path) as f, open("/dev/full", "w") as full:
        f.write("row\n")
        full.write("x")
        full.flush()  # ENOSPC, as a real full disk gives it
    assert info.value.errno == errno.ENOSPC
    assert atomic.is_disk_error(info.value)
    assert not path.exists() and os.listdir(tmp_path) == []


def unshare_prefix() -> list[str]:
    """Run a command in a private mount namespace (as root there), or skip where the OS forbids it."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user/mount namespaces not allowed here: {probe.stderr.decode().strip()}")
    return ["unshare", "-rm", "sh", "-c"]


# the CLI twice in one process (one import of the library): `medtune prepare CONFIG` for each argument
PREPARE_EACH = """
import sys
from medtune.apps.cli import app
for config in sys.argv[1:]:
    print("exit", app(["prepare", config], standalone_mode=False), flush=True)
"""


def test_full_disk_or_read_only_output_is_one_line(tmp_path):
    """`medtune prepare` into an 8 KiB tmpfs (its files do not fit) and into a read-only bind mount, mounted
    in a private mount namespace: works as root too, where a chmod would not stop a write."""
    prefix = unshare_prefix()
    full, read_only, src = tmp_path / "full", tmp_path / "read_only", tmp_path / "src"
    configs = []
    for out in (full, read_only, src):
        out.mkdir()
        cfg = load_config(None, tiny_overrides(out, "run") + [f"data.sources=[{{kind: generic, path: {FIXTURE}}}]"])
        configs.append(tmp_path / f"{out.name}.yaml")
        dump_config(cfg, configs[-1])
    script = (f"mount -t tmpfs -o size=8k tmpfs {full} && mount -o bind,ro {src} {read_only} && "
              f"exec {sys.executable} -c '{PREPARE_EACH}' {configs[0]} {configs[1]}")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "400"}
    proc = subprocess.run(prefix + [script], env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("error:", "exit"))]
    assert len(lines) == 4 and lines[1] == lines[3] == "exit 1", output
    assert lines[0].startswith(f"error: {full}/run/") and lines[0].endswith(": No space left on device"), output
    assert lines[2].startswith(f"error: {read_only}/run") and lines[2].endswith(": Read-only file system"), output
    assert not list(src.iterdir())
