"""Calibration from real learning logs: read and pseudonymise logs, fit student models and
populations, report, and simulate logs with known parameters.

Quick use::

    from pedagogym.fitting import read_log, fit, write_population
    log = read_log("responses.csv")          # validated; learner ids salted-hashed
    result = fit(log, "bkt")                 # per-skill parameters + population
    write_population(result, "population_bkt.toml")
"""
from pedagogym.fitting.fit import FITTERS, FitError, FitResult, fit
from pedagogym.fitting.formats import FORMATS, read_log
from pedagogym.fitting.log import Log, LogError, concat_logs, from_frame
from pedagogym.fitting.population_file import AppliedParams, FittedParamsError, apply_fitted_params, write_population
from pedagogym.fitting.simulate import simulate_log, synthetic_curriculum

__all__ = ["FITTERS", "FORMATS", "FitError", "FitResult", "fit", "Log", "LogError", "concat_logs", "from_frame", "read_log", "AppliedParams",
           "FittedParamsError", "apply_fitted_params", "write_population", "simulate_log", "synthetic_curriculum"]
