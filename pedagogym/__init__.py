"""pedagogym: simulated learners as fast JAX Gymnasium environments for content sequencing."""
__version__ = "0.1.0"
