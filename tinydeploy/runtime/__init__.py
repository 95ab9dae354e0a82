"""The runtime layer: the TFLite Micro interpreter and TFLite's reference kernels on the host."""
