"""The five built-in scheduled jobs (seed D, DESIGN decision 8), each real work on the learning database.

=========================  ==========  ===========================================================
job                        trigger     what it does
=========================  ==========  ===========================================================
``token_budget``           monthly     tokens and model-seconds per domain and model against the
                                       budgets; answers cut at max_tokens, prompts near num_ctx;
                                       plans for a larger max_tokens / num_ctx (for approval)
``formula_tuning``         quarterly   fits the meta-supervisor weights, the hybrid weights and the
                                       two-tier thresholds to the history by replay; the better
                                       fit as a plan, kept or rolled back copy-on-write
``health_profiling``       bi-weekly   a smoke set through every reachable model (first token,
                                       tokens/s, solved), server memory, health, opportunities
``security_scan``          cve         bandit / hardened compiler / cppcheck over the generated
                                       code of the answer store as ``security`` feedback; CRITICAL
                                       findings as opportunities; pip-audit of kisystem's packages
``improvement_proposals``  continuous  patterns, learnings, opportunities, plans: LOW / MEDIUM
                                       applied under the strategy, HIGH / CRITICAL for approval
=========================  ==========  ===========================================================

Settings: the config's ``jobs`` section (:class:`kisystem.config.JobSettings`).
"""

from __future__ import annotations

# The modules, not their handlers, under their names: ``kisystem.schedule.jobs.security_scan`` stays the module.
from kisystem.schedule.jobs import formula_tuning, health_profiling, improvement_proposals, security_scan, token_budget
from kisystem.schedule.tasks import OptimizationTask

HEALTH_TIME_LIMIT_S = 3600.0  # a smoke set on every model of a CPU-only fleet takes a while
SCAN_TIME_LIMIT_S = 1800.0  # up to jobs.security_max_answers analyses, and pip-audit


def builtin_tasks() -> list[OptimizationTask]:
    """The five jobs with seed D's triggers, continuous first."""
    return [
        OptimizationTask("improvement_proposals", "feedback", "continuous", improvement_proposals.improvement_proposals,
                         "patterns and learnings from feedback; opportunities as plans (LOW/MEDIUM applied "
                         "copy-on-write, HIGH/CRITICAL for approval)"),
        OptimizationTask("security_scan", "security", "cve", security_scan.security_scan,
                         "static security analysis of the generated code in the answer store; pip-audit of "
                         "kisystem's dependencies", SCAN_TIME_LIMIT_S),
        OptimizationTask("health_profiling", "models", "bi-weekly", health_profiling.health_profiling,
                         "a smoke set through every reachable model: first token, tokens/s, solved, server "
                         "memory; health and opportunities", HEALTH_TIME_LIMIT_S),
        OptimizationTask("token_budget", "budget", "monthly", token_budget.token_budget,
                         "tokens and model-seconds per domain and model against the budgets; max_tokens and "
                         "num_ctx plans"),
        OptimizationTask("formula_tuning", "routing", "quarterly", formula_tuning.formula_tuning,
                         "meta-supervisor weights, hybrid weights and two-tier thresholds fitted to the history "
                         "by replay; the better fit as a plan"),
    ]
