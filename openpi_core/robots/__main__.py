"""`python -m openpi_core.robots [name]`: the registered robots (built-in and plugins), or one robot's spec."""

from __future__ import annotations

import argparse
import sys

from openpi_core.robots import registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openpi_core.robots", description=__doc__)
    parser.add_argument("name", nargs="?", help="show this robot's cameras, joints, actions and limits")
    args = parser.parse_args(argv)
    if args.name is None:
        for name, spec in registry.robots().items():
            print(f"{name:12} {spec.description}")
        for name, error in registry.plugin_errors().items():
            print(f"{name:12} SKIPPED: {error}")
        return 0
    try:
        spec = registry.get(args.name)
    except registry.UnknownRobotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{spec.name}: {spec.description}")
    for camera in spec.cameras:
        print(f"  camera {camera.name:22} topic {camera.topic:28} -> {camera.model_key} (dataset: {camera.feature})")
    print(f"  state  {', '.join(spec.joint_names)} (from {', '.join(spec.joint_state_topics)})")
    print(f"  action {', '.join(spec.actions)}: {spec.action_units or 'units not stated'}")
    print(f"  rates  control {spec.control_rate:g} Hz, policy {spec.policy_rate:g} Hz")
    for key, value in spec.limits.parameters().items():
        print(f"  limit  {key}: {value}")
    extras = {"sim": spec.sim, "debug config": spec.debug_config, "train configs": spec.train_configs}
    for key, value in extras.items():
        if value:
            print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
