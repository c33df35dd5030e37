"""The policy server: wire compatibility with openpi's published client, our client, security limits, load."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest
import websockets
from helpers.policies import HORIZON, libero_observation, make_tiny_libero_checkpoint, write_random_checkpoint
from websockets.sync.client import connect

from openpi_core import normalize
from openpi_core.policies import HoldPositionPolicy
from openpi_core.robots.aloha import make_aloha_example as aloha_policy_example
from openpi_core.serving import codec
from openpi_core.serving.client import PolicyConnectionError, PolicyServerError, WebsocketPolicyClient
from openpi_core.serving.server import PolicyServer, ServerConfig
from openpi_core.serving.spec import ObservationSpec, spec_for
from openpi_core.training import configs as _configs

REPO = Path(__file__).resolve().parent.parent
CLIENT_PYTHON = REPO / ".venv-client" / "bin" / "python"
HELPERS = Path(__file__).resolve().parent / "helpers"


def _hold_example() -> dict:
    rng = np.random.default_rng(0)
    return {
        "state": rng.uniform(-1, 1, 14).astype(np.float32),
        "images": {"cam_high": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)},
        "prompt": "hold",
    }


@pytest.fixture
def hold_server() -> PolicyServer:
    spec = ObservationSpec.from_example(_hold_example())
    server = PolicyServer(HoldPositionPolicy(horizon=HORIZON, action_dim=14), ServerConfig(port=0), spec=spec)
    with server:
        yield server


def _url(server: PolicyServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


# -- codec ---------------------------------------------------------------------------------------------------------
def test_codec_round_trip_and_refusals() -> None:
    tree = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": {"c": np.zeros((2, 0), np.uint8), "d": np.array([True, False])},
        "s": np.float32(2.5),
        "p": "text",
        "n": [1, 2.0],
    }
    back = codec.unpackb(codec.packb(tree))
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["a"].dtype == np.float32
    assert back["b"]["c"].shape == (2, 0)
    assert back["s"] == 2.5
    assert isinstance(back["s"], np.float32)
    assert back["p"] == "text"
    assert back["n"] == [1, 2.0]
    # The wire format is openpi's msgpack_numpy: bytes keys, dtype.str, raw data.
    raw = msgpack.unpackb(codec.packb(np.ones(2, np.int16)))
    assert raw == {b"__ndarray__": True, b"data": np.ones(2, np.int16).tobytes(), b"dtype": "<i2", b"shape": [2]}

    with pytest.raises(TypeError, match="dtype object"):
        codec.packb(np.array([object()]))
    with pytest.raises(codec.CodecError, match="not allowed"):  # object arrays would build arbitrary Python objects
        codec.unpackb(msgpack.packb({b"__ndarray__": True, b"data": b"x" * 8, b"dtype": "|O", b"shape": [1]}))
    with pytest.raises(codec.CodecError, match="needs 8 bytes, got 4"):
        codec.unpackb(msgpack.packb({b"__ndarray__": True, b"data": b"xxxx", b"dtype": "<f4", b"shape": [2]}))
    with pytest.raises(codec.CodecError, match="shape"):
        codec.unpackb(msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [-1]}))
    with pytest.raises(codec.CodecError, match="not a valid msgpack frame"):
        codec.unpackb(b"\xc1\xff\x00")


def test_client_imports_without_jax() -> None:
    """A robot in remote mode must not pay for (or need) JAX."""
    code = (
        "import sys; import openpi_core.serving.client, openpi_core.serving.server, openpi_core.policies;"
        "bad = sorted(m for m in ('jax', 'flax', 'orbax') if m in sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- openpi's own client against our server with a real (tiny) model -------------------------------------------------
@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> PolicyServer:
    from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415

    config, checkpoint = make_tiny_libero_checkpoint(tmp_path_factory.mktemp("serving"))
    policy = create_trained_policy(config, checkpoint, sample_kwargs={"num_steps": 2})
    server = PolicyServer(policy, ServerConfig(port=0, api_key="correct horse"), spec=spec_for("libero"))
    with server:
        yield server


def test_openpi_client_round_trip(model_server: PolicyServer, tmp_path: Path) -> None:
    assert CLIENT_PYTHON.exists(), "run `make setup`: it installs openpi-client into .venv-client"
    out = tmp_path / "out.npz"
    script = str(HELPERS / "openpi_client_session.py")
    subprocess.run([str(CLIENT_PYTHON), script, _url(model_server), "correct horse", str(out)], check=True, timeout=120)
    got = np.load(out)
    expected = np.broadcast_to(2.0 + got["state"][:6], (HORIZON, 6))
    for key in ("first", "second"):  # the tiny checkpoint's actions are mean 2.0 + state (see helpers.policies)
        assert got[key].shape == (HORIZON, 7)
        np.testing.assert_allclose(got[key][:, :6], expected, atol=1e-4)
    error = str(got["error"])
    assert "Error in inference server" in error
    assert "observation/state" in error
    assert "expected shape (8,), got (5,)" in error
    metadata = json.loads(str(got["metadata"]))
    assert metadata["config_name"] == "libero_tiny"
    assert metadata["action_horizon"] == HORIZON
    assert metadata["observation_spec"]["observation/state"]["shape"] == [8]
    assert json.loads(str(got["server_timing"]))["infer_ms"] > 0

    # Wrong key: openpi's client cannot even open the connection.
    result = subprocess.run(
        [str(CLIENT_PYTHON), script, _url(model_server), "wrong", str(tmp_path / "x.npz")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "401" in result.stderr


def test_our_client_with_model(model_server: PolicyServer) -> None:
    with WebsocketPolicyClient(_url(model_server), api_key="correct horse") as client:
        assert client.metadata["config_name"] == "libero_tiny"
        obs = libero_observation(3)
        out = client.infer(obs)
        np.testing.assert_allclose(
            out["actions"][:, :6], np.broadcast_to(2.0 + obs["observation/state"][:6], (5, 6)), atol=1e-4
        )
        with pytest.raises(PolicyServerError, match=r"'observation/wrist_image': missing"):
            client.infer({k: v for k, v in obs.items() if k != "observation/wrist_image"})
        with pytest.raises(PolicyServerError, match=r"'observation/state': contains NaN"):
            client.infer({**obs, "observation/state": np.full(8, np.nan, np.float32)})
        assert client.infer(obs)["actions"].shape == (HORIZON, 7)  # still served after the refusals


# -- security limits -------------------------------------------------------------------------------------------------
def test_auth_healthz_and_client_limit() -> None:
    config = ServerConfig(port=0, api_key="s3cret", max_clients=2)
    with PolicyServer(HoldPositionPolicy(horizon=2), config) as server:
        url = _url(server)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert response.status == 200  # health checks need no key
            assert response.read() == b"OK\n"
        for key in ("wrong", None, "S3CRET"):
            with pytest.raises(PolicyConnectionError, match="401"):
                WebsocketPolicyClient(url, api_key=key)
        with pytest.raises(websockets.InvalidStatus, match="401"):
            connect(url, additional_headers={"Authorization": "Bearer s3cret"}, legacy=True).close()
        first, second = WebsocketPolicyClient(url, api_key="s3cret"), WebsocketPolicyClient(url, api_key="s3cret")
        with pytest.raises(PolicyConnectionError, match="503"):
            WebsocketPolicyClient(url, api_key="s3cret")
        np.testing.assert_array_equal(first.infer({"state": np.ones(3)})["actions"], np.ones((2, 3)))
        second.close()
        np.testing.assert_array_equal(second.infer({"state": np.zeros(3)})["actions"], np.zeros((2, 3)))  # reconnects
        first.close()
        second.close()
        assert server.stats.rejected_handshakes == 5


def test_bind_address_defaults_to_loopback() -> None:
    assert ServerConfig().host == "127.0.0.1"
    with PolicyServer(HoldPositionPolicy(), ServerConfig(port=0)) as server:
        assert server._server.sockets[0].getsockname()[0] == "127.0.0.1"


def test_message_size_limit(hold_server: PolicyServer) -> None:
    limit = hold_server.config.max_message_bytes
    with connect(_url(hold_server), max_size=None) as ws:
        ws.recv()
        ws.send(b"\x00" * (limit + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009  # message too big
    with WebsocketPolicyClient(_url(hold_server)) as client:  # the server is unharmed
        assert client.infer(_hold_example())["actions"].shape == (HORIZON, 14)


# -- load: 8 clients x 200 requests with malformed frames mixed in ---------------------------------------------------
def _bad_frames() -> list[tuple[str | bytes, str]]:
    """(frame, a phrase the refusal must contain)."""
    good = _hold_example()
    array = {b"__ndarray__": True, b"data": b"\x00" * 4, b"dtype": "<f4", b"shape": [14]}
    return [
        ("{'state': [1, 2]}", "text frame"),
        (os.urandom(64) + b"\xc1", "not a valid msgpack frame"),
        (codec.packb([1, 2, 3]), "expected a map"),
        (msgpack.packb({"state": array}), "needs 56 bytes, got 4"),
        (msgpack.packb({"state": {**array, b"dtype": "|O"}}), "not allowed"),
        (codec.packb({"images": good["images"]}), "'state': missing"),
        (codec.packb({**good, "state": np.zeros(7, np.float32)}), "'state': expected shape (14,), got (7,)"),
        (codec.packb({**good, "state": np.full(14, np.inf, np.float32)}), "'state': contains NaN or Inf"),
        (codec.packb({**good, "images": {"cam_high": np.zeros((4, 4), np.uint8)}}), "'images.cam_high'"),
        (codec.packb({**good, "prompt": 3}), "'prompt': expected a string"),
    ]


def test_concurrent_clients_with_malformed_frames(hold_server: PolicyServer) -> None:
    clients, requests = 8, 200
    bad_frames = _bad_frames()
    failures: list[str] = []
    counts = {"good": 0, "bad": 0}
    lock = threading.Lock()

    def run(index: int) -> None:
        rng = random.Random(index)
        good, bad = 0, 0
        try:
            with connect(_url(hold_server), max_size=None) as ws:
                assert codec.unpackb(ws.recv())["horizon"] == HORIZON
                for i in range(requests):
                    if rng.random() < 0.2:
                        frame, phrase = rng.choice(bad_frames)
                        ws.send(frame)
                        reply = ws.recv(timeout=30)
                        if not isinstance(reply, str) or phrase not in reply:
                            failures.append(f"client {index} request {i}: expected a refusal with {phrase!r}")
                        bad += 1
                    else:
                        obs = _hold_example()
                        obs["state"] = np.full(14, index + i / 1000, np.float32)
                        ws.send(codec.packb(obs))
                        reply = ws.recv(timeout=30)
                        if isinstance(reply, str):
                            failures.append(f"client {index} request {i}: refused: {reply}")
                        else:
                            actions = codec.unpackb(reply)["actions"]
                            if actions.shape != (HORIZON, 14) or not np.all(actions == obs["state"]):
                                failures.append(f"client {index} request {i}: wrong answer (another client's?)")
                        good += 1
        except Exception as e:
            failures.append(f"client {index}: {type(e).__name__}: {e}")
        with lock:
            counts["good"] += good
            counts["bad"] += bad

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[:5]
    assert counts["good"] + counts["bad"] == clients * requests
    assert counts["bad"] > 100
    assert hold_server.stats.served == counts["good"]
    assert hold_server.stats.refused == counts["bad"]
    assert hold_server.stats.connections == clients


# -- the CLI ---------------------------------------------------------------------------------------------------------
def _start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "openpi_core.serving", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on ws://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
    return proc, line.split("listening on ")[1].strip()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_interrupted_or_terminated(tmp_path: Path, signum: int) -> None:
    """Finding 12: SIGTERM (what `docker stop` sends) used to end in `RuntimeError: Event loop is closed`, exit 1."""
    key_file = tmp_path / "key"
    key_file.write_text("k3y\n")
    proc, url = _start_cli("--hold", "--action-dim", "3", "--api-key-file", str(key_file))
    try:
        with WebsocketPolicyClient(url, api_key="k3y") as client:
            assert client.metadata["auth"] == "api_key"
            np.testing.assert_array_equal(client.infer({"state": np.arange(3.0)})["actions"][0], [0, 1, 2])
            proc.send_signal(signum)
            start = time.monotonic()
            assert proc.wait(timeout=10) == 0, proc.stderr.read()  # with a client still connected
            assert time.monotonic() - start < 2.0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_cli_hold_validates_observations_for_a_named_robot() -> None:
    """Finding 12: `--hold` used to skip validation even with `--robot`."""
    proc, url = _start_cli("--hold", "--robot", "aloha")
    try:
        with WebsocketPolicyClient(url) as client:
            with pytest.raises(PolicyServerError, match="images"):
                client.infer({"state": np.zeros(14, np.float32)})
            obs = aloha_policy_example()
            assert client.infer(obs)["actions"].shape == (50, 14)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _flood(max_queue: int) -> tuple[float, bool]:
    """A client sends 24 frames of 8 MiB to a server that takes 0.5 s per request, without reading any reply.
    Returns the server's RSS growth in MiB over 4 s and whether the client was still blocked in sending."""
    cmd = [sys.executable, str(HELPERS / "slow_server.py"), "0.5", str(max_queue)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split("listening on ")[1].strip()
        before = peak = _rss_mib(proc.pid)
        frame = codec.packb({"state": np.zeros(3), "pad": np.zeros(8 * 2**20, np.uint8)})
        with connect(url, max_size=None, compression=None, close_timeout=1) as ws:
            ws.recv(timeout=10)  # metadata

            def send_all() -> None:
                with contextlib.suppress(websockets.ConnectionClosed):  # closed by the test while still blocked
                    for _ in range(24):
                        ws.send(frame)

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                peak = max(peak, _rss_mib(proc.pid))
                time.sleep(0.05)
            blocked = sender.is_alive()
        return peak - before, blocked
    finally:
        proc.kill()
        proc.wait()


def test_a_flooding_client_cannot_grow_the_server_without_bound() -> None:
    """Finding 12: websockets' default queue (16 frames) let 16 clients x 16 x 16 MiB pile up. The server now
    buffers one unread frame per client: a client that floods it is held back by TCP instead."""
    growth, blocked = _flood(max_queue=1)
    # Measured here: about 50 MiB with one queued frame, about 180 MiB with websockets' default of 16.
    assert growth < 100, f"server grew by {growth:.0f} MiB with 8 MiB frames"
    assert blocked, "the client could send all 24 frames: nothing pushed back"


class _BlockingPolicy:
    """A policy whose first call hangs until released (a wedged GPU call)."""

    metadata: dict = {}  # noqa: RUF012

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        self.calls += 1
        if self.calls == 1:
            self.release.wait(30)
        return {"actions": np.zeros((2, 3), np.float32)}


def _health(port: int) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code


def test_inference_timeout_answers_an_error_and_reports_unhealthy() -> None:
    """Finding 12: no per-request timeout, and /healthz stayed 200 while the one inference worker was wedged."""
    policy = _BlockingPolicy()
    with PolicyServer(policy, ServerConfig(port=0, inference_timeout_s=0.5)) as server:
        with WebsocketPolicyClient(_url(server)) as client:
            start = time.monotonic()
            with pytest.raises(PolicyServerError, match=r"timed out after 0\.5 s"):
                client.infer({"state": np.zeros(3)})
            assert time.monotonic() - start < 3.0
            assert _health(server.port) == 503
            with pytest.raises(PolicyServerError, match="stuck in one call"):
                client.infer({"state": np.zeros(3)})  # refused at once, not queued behind the wedged call
            policy.release.set()
            deadline = time.monotonic() + 5
            while _health(server.port) != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _health(server.port) == 200
            assert client.infer({"state": np.zeros(3)})["actions"].shape == (2, 3)
        assert server.stats.timeouts == 1


def test_cli_errors() -> None:
    cmd = [sys.executable, "-m", "openpi_core.serving"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "give --config and --checkpoint (or --hold)" in result.stderr
    result = subprocess.run(
        [*cmd, "--hold", "--max-clients", "0"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "max_clients must be >= 1" in result.stderr


def test_healthz_unreachable_when_stopped() -> None:
    server = PolicyServer(HoldPositionPolicy(), ServerConfig(port=0)).start()
    port = server.port
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_cli_fails_fast_and_in_one_line_without_a_tokenizer(tmp_path: Path) -> None:
    """A tokenizer that can be neither found nor fetched ends the server in seconds, naming the file and the flag
    (it used to retry gs:// and end in a 100-line aiohttp traceback)."""
    stats = {k: normalize.NormStats(mean=np.zeros(14), std=np.ones(14)) for k in ("state", "actions")}
    checkpoint = write_random_checkpoint(
        _configs.get_config("debug_aloha"), tmp_path / "ckpt", "local/aloha_demos", stats
    )
    url = "http://127.0.0.1:9/paligemma_tokenizer.model"
    cmd = [sys.executable, "-m", "openpi_core.serving", "--config", "debug_aloha", "--checkpoint", str(checkpoint)]
    start = time.monotonic()
    result = subprocess.run(
        [*cmd, "--port", "0", "--paligemma-tokenizer", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [errors[0]]
    assert url in errors[0]
    assert "--paligemma-tokenizer" in errors[0]
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 60  # process start and model restore included; the fetch itself fails at once
