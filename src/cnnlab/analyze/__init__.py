"""Analysis of stored runs: configurations and seeds, ranking with statistics, diagnoses, conclusions."""

from cnnlab.analyze.cells import Cell, group_cells, varying_keys
from cnnlab.analyze.claim import Claim, parse_claim
from cnnlab.analyze.conclusions import Conclusions
from cnnlab.analyze.contrasts import EffectEstimate, effect_estimates
from cnnlab.analyze.design import Design, classify
from cnnlab.analyze.diagnose import Diagnosis, Finding, diagnose_epochs, diagnose_run
from cnnlab.analyze.effects import Effect, effect_of
from cnnlab.analyze.factor_text import factor_sentences
from cnnlab.analyze.factorial import AnovaRow, FactorialAnalysis, SimpleEffect, analyze_factors
from cnnlab.analyze.factors import Factor, find_factors
from cnnlab.analyze.metrics import DEFAULT_METRIC, METRICS, Metric, choose_metric
from cnnlab.analyze.ranking import Ranking, rank_cells
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.select import exclude_runs, load_runs
from cnnlab.analyze.stats import Summary, summarize, welch_p
from cnnlab.analyze.study import Study, analyze_runs, analyze_stored, diagnose_stored, stored_claim

__all__ = [
    "DEFAULT_METRIC",
    "METRICS",
    "AnovaRow",
    "Cell",
    "Claim",
    "Conclusions",
    "Design",
    "Diagnosis",
    "Effect",
    "EffectEstimate",
    "Factor",
    "FactorialAnalysis",
    "Finding",
    "Metric",
    "Ranking",
    "RunData",
    "SimpleEffect",
    "Study",
    "Summary",
    "analyze_factors",
    "analyze_runs",
    "analyze_stored",
    "choose_metric",
    "classify",
    "diagnose_epochs",
    "diagnose_run",
    "diagnose_stored",
    "effect_estimates",
    "effect_of",
    "exclude_runs",
    "factor_sentences",
    "find_factors",
    "group_cells",
    "load_runs",
    "parse_claim",
    "rank_cells",
    "stored_claim",
    "summarize",
    "varying_keys",
    "welch_p",
]
