"""Robots: one `RobotSpec` per arm (`spec`), the built-in ALOHA, DROID and LIBERO, and plugins (`registry`)."""
