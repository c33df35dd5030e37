"""Robot adapters: a robot's observation -> the model's inputs, the model's actions -> the robot's (openpi's
`*Inputs` / `*Outputs` transforms). openpi's ALOHA, DROID and LIBERO conventions, and `robot_policy` for any
registered robot. Used by the training configs and, through them, by every trained policy."""
