"""Test-session set-up.

One JAX persistent compilation cache for the whole run, fresh each run and removed after it:
the pytest-xdist workers and the subprocesses that tests start (the CLI, the 4-device run)
inherit its path, so a program that several tests compile (an env's step kernel, a rollout)
is compiled once per run instead of once per process. Tests still start cold, as on CI; none
reads a cache left by an earlier run, and none writes to the user's ``~/.cache``
(``PEDAGOGYM_JAX_CACHE``, which the CLI reads, points at the same folder).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

if "PEDAGOGYM_TEST_JAX_CACHE" not in os.environ:  # the controller (or a plain pytest run)
    _dir = tempfile.mkdtemp(prefix="pedagogym-test-jax-cache-")
    os.environ["PEDAGOGYM_TEST_JAX_CACHE"] = _dir
    atexit.register(shutil.rmtree, _dir, ignore_errors=True)
_cache = os.environ["PEDAGOGYM_TEST_JAX_CACHE"]
os.environ["PEDAGOGYM_JAX_CACHE"] = _cache
os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1.0"
# XLA's backend (LLVM) optimisation off for the whole run, subprocesses included (they inherit
# it): most tests compile small programs and run them briefly, so compiling dominates. Measured
# on one core: test_teaching 160 -> 119 s, test_experiments 64 -> 50 s, test_policies 67 -> 56 s;
# long-running ones lose a little (test_fitting 113 -> 123 s). The programs are the same HLO;
# only the machine code is less optimised, and every process of a run compiles the same way.
O0 = "--xla_backend_optimization_level=0"
if O0 not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + O0).strip()

import jax  # noqa: E402  (after the environment, which JAX reads on import)

jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
