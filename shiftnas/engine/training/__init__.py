"""Training loops: the one optimisation policy, the supernet, landmarks, stand-alone and fine-tuning."""
