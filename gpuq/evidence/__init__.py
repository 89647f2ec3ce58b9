"""Measured results: the evidence a participant's agent records during a benchmark run,
the five metrics the server derives from it, and the checks it must pass.

* `model`: what the evidence holds (the GPU, the samples, the run), as plain values.
* `derive`: the five metrics from the evidence: the formulas the README documents.
* `checks`: the rules evidence must pass, each with a stable code.
* `flags`: plausibility flags for any result, measured or self-reported.

Everything here is pure: values in, values out, no clock, no database.
"""
