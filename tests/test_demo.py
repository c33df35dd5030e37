"""`make demo`'s program: separate node processes over real DDS, checked chunks, clean exit, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ros


def test_demo_runs_and_checks_chunks():
    out = subprocess.run(
        [sys.executable, "-m", "openpi_ros.demo", "--duration", "3", "--namespace", "demo_test"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo OK" in out.stdout
    checked = re.search(r"chunks checked against joint state: (\d+)/(\d+), errors: 0", out.stdout)
    assert checked, out.stdout
    assert int(checked.group(1)) >= 10, out.stdout
    assert re.search(r"node exit codes: \{'synthetic_robot': 0, 'policy_node': 0\}", out.stdout)
    rate = re.search(r"action_chunk\s+\d+ msgs\s+([\d.]+) Hz", out.stdout)
    assert rate, out.stdout
    assert 5.0 < float(rate.group(1)) < 15.0, out.stdout  # asked for 10 Hz


def test_demo_exits_cleanly_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "openpi_ros.demo", "--duration", "60", "--namespace", "demo_sigint"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        deadline = time.monotonic() + 60
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "first chunk" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the runner and its nodes at once
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "node exit codes: {'synthetic_robot': 0, 'policy_node': 0}" in output
    assert "Traceback" not in output
