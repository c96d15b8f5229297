"""Student models (pure JAX), learner components and populations, with their registries."""
from pedagogym.registry import Registry
from pedagogym.student_models.base import StudentModel, Traits
from pedagogym.student_models.population import BUILTIN_POPULATIONS, Population, load_population, sample_traits

STUDENT_MODELS: Registry[StudentModel] = Registry("student_model")
POPULATIONS: Registry[Population] = Registry("population")
COMPONENTS: Registry = Registry("learner_component")

# One line per model: the module's class, registered under its ``name``.
from pedagogym.student_models.bkt import BKT  # noqa: E402
from pedagogym.student_models.efc import EFC  # noqa: E402
from pedagogym.student_models.hlr import HLR  # noqa: E402
from pedagogym.student_models.actr import ACTR  # noqa: E402
from pedagogym.student_models.fsrs import FSRS  # noqa: E402
from pedagogym.student_models.irt import IRT  # noqa: E402
from pedagogym.student_models.pfa import PFA  # noqa: E402
from pedagogym.student_models.dash import DASH  # noqa: E402

for _model in (BKT(), EFC(), HLR(), ACTR(), FSRS(), IRT(n_pl=1), IRT(n_pl=2), IRT(n_pl=3), PFA(), DASH(),
               # adaptive testing: a fixed ability during the test (no learning), theta = the prior trait
               IRT(n_pl=3, theta0=0.0, growth=0.0, fail_growth=0.0, name="irt3pl_static"),):
    STUDENT_MODELS.register(_model.name, _model)

from pedagogym.student_models.learner import ENGAGEMENT, PREREQUISITES, RESPONSE_TIME  # noqa: E402

for _comp in (PREREQUISITES, ENGAGEMENT, RESPONSE_TIME):
    COMPONENTS.register(_comp.name, _comp)

for _pop in BUILTIN_POPULATIONS:
    POPULATIONS.register(_pop.name, _pop)

__all__ = ["STUDENT_MODELS", "POPULATIONS", "COMPONENTS", "StudentModel", "Traits", "Population", "load_population", "sample_traits"]
