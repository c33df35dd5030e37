"""Fine-tuning on LeRobot datasets: configs, data loading, optimizer, sharding, checkpoints, the train loop."""
