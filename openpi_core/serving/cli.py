"""`openpi-serve`: serve a trained policy (or the hold-position baseline) to robots over websockets.

    openpi-serve --config pi05_droid --checkpoint gs://openpi-assets/checkpoints/pi05_droid
    OPENPI_SERVER_API_KEY=... openpi-serve --config pi0_aloha_towel --checkpoint ./ckpt --host 0.0.0.0
    openpi-serve --hold --action-dim 14          # no model: echo the state back (for wiring checks)

The API key is read from ``$OPENPI_SERVER_API_KEY`` or ``--api-key-file`` (never from the command line, where other
users of the machine could read it in the process list).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Sequence

from openpi_core.errors import OpenpiError
from openpi_core.models import tokenizer_sources
from openpi_core.policies.hold import HoldPositionPolicy
from openpi_core.policies.protocol import PolicyClient
from openpi_core.robots import registry
from openpi_core.serving.server import PolicyServer, ServerConfig
from openpi_core.serving.spec import ObservationSpec, example_for, spec_for

logger = logging.getLogger("openpi_core.serving")

API_KEY_ENV = "OPENPI_SERVER_API_KEY"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openpi-serve", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_argument_group("policy")
    src.add_argument("--config", help="training config name, e.g. pi05_droid (see `python training/train.py --help`)")
    src.add_argument("--checkpoint", help="checkpoint folder: local path, file:// or gs:// (params/ + assets/)")
    src.add_argument("--default-prompt", help="prompt used when an observation has none")
    src.add_argument("--num-steps", type=int, help="flow-matching steps (π₀/π₀.₅; default: the model's)")
    src.add_argument("--hold", action="store_true", help="serve the hold-position baseline instead of a model")
    src.add_argument("--horizon", type=int, default=50, help="--hold: chunk length (default 50)")
    src.add_argument("--action-dim", type=int, help="--hold: expected state size (default: any)")
    src.add_argument(
        "--robot",
        choices=[*registry.names(), "auto", "none"],
        default="auto",
        help="validate observations against this robot's layout (auto: the config's robot; none: no check)",
    )
    src.add_argument("--no-warmup", action="store_true", help="do not run one inference before listening")
    tokenizer_sources.add_arguments(p)
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: all; default 127.0.0.1)")
    net.add_argument("--port", type=int, default=8000, help="port (default 8000, as openpi; 0: any free port)")
    net.add_argument("--api-key-file", type=pathlib.Path, help=f"file holding the API key (else ${API_KEY_ENV})")
    net.add_argument("--max-message-mb", type=float, default=16.0, help="largest accepted request (default 16)")
    net.add_argument("--max-clients", type=int, default=16, help="concurrent clients (default 16)")
    net.add_argument(
        "--inference-timeout",
        type=float,
        default=30.0,
        help="answer a request whose inference takes longer with an error, and report /healthz 503 (default 30 s)",
    )
    return p


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file is not None:
        key = args.api_key_file.read_text().strip()
        if not key:
            raise ValueError(f"--api-key-file {args.api_key_file} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def _robot(args: argparse.Namespace) -> str | None:
    """The robot whose layout requests are validated against (`--hold` too, when a robot is named)."""
    if args.robot == "none":
        return None
    if args.robot != "auto":
        return args.robot
    if not args.config:
        return None
    from openpi_core.training import configs as _configs  # noqa: PLC0415 (imports the model code)

    return _configs.get_config(args.config).data.robot_name() or None


def _policy(args: argparse.Namespace) -> PolicyClient:
    if args.hold:
        return HoldPositionPolicy(horizon=args.horizon, action_dim=args.action_dim)
    if not args.config or not args.checkpoint:
        raise ValueError("give --config and --checkpoint (or --hold)")
    # JAX and the model code load only when a model is served.
    from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415
    from openpi_core.training import configs as _configs  # noqa: PLC0415

    sample_kwargs = {"num_steps": args.num_steps} if args.num_steps else None
    logger.info("loading %s from %s", args.config, args.checkpoint)
    start = time.perf_counter()
    policy = create_trained_policy(
        _configs.get_config(args.config),
        args.checkpoint,
        default_prompt=args.default_prompt,
        sample_kwargs=sample_kwargs,
        paligemma_tokenizer=args.paligemma_tokenizer,
        fast_tokenizer=args.fast_tokenizer,
    )
    logger.info("policy restored in %.1f s", time.perf_counter() - start)
    return policy


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            api_key=_api_key(args),
            max_message_bytes=int(args.max_message_mb * 2**20),
            max_clients=args.max_clients,
            inference_timeout_s=args.inference_timeout,
        )
        robot = _robot(args)
        spec: ObservationSpec | None = spec_for(robot) if robot else None
        policy = _policy(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"openpi-serve: error: {e}", file=sys.stderr)
        return 2
    if robot and not args.hold and not args.no_warmup:
        start = time.perf_counter()
        try:
            policy.infer(example_for(robot))
        except OpenpiError as e:  # e.g. a tokenizer that is neither local nor downloadable
            print(f"openpi-serve: error: {e}", file=sys.stderr)
            return 2
        logger.info("warm-up inference (compilation included) took %.1f s", time.perf_counter() - start)
    if config.api_key is None and config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s without an API key: anyone on the network can drive this policy", config.host)
    server = PolicyServer(policy, config, spec=spec)
    stop = threading.Event()  # SIGTERM (`docker stop`) and SIGINT end the wait below; the server stops once, here
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
        print(f"openpi-serve: listening on ws://{config.host}:{server.port}", flush=True)
        while server.running and not stop.wait(0.2):
            pass
    except OSError as e:
        print(f"openpi-serve: error: cannot listen on {config.host}:{config.port}: {e}", file=sys.stderr)
        return 1
    finally:
        server.stop(timeout=1.5)
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
