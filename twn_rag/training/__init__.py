"""Training TWN adapters on your own data: SFT, the self-supervised gate, embedding-guided RL."""
