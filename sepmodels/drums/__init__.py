"""The drum machine: a conditional Wasserstein autoencoder over drum hits, an inverter, and the synthesizer."""
