"""gpuq-agent: the participant's command-line tool for gpuq.

It runs a benchmark while sampling the GPU through NVML (`backends`, `sampler`),
asks the server for a run ticket first and sends the evidence after (`client`), and
wraps the participant's other requests (`cli`). It uses only the standard library
and, for a real GPU, NVIDIA's `nvidia-ml-py`; it never imports Flask or the server.
"""

__version__ = "0.1.0"
AGENT = f"gpuq-agent/{__version__}"
