"""Neural network building blocks: WaveNet and flows."""
