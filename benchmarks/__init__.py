"""Speed tools of the repository (not installed): the benchmark, the CUDA-step trace, the GPU check and profile."""
