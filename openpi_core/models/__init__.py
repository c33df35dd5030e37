"""π₀, π₀.₅ and π₀-FAST in JAX/Flax NNX, reading official openpi checkpoints unchanged."""
