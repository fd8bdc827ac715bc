"""Self-improvement (seed C): feedback on every run, patterns, learnings, health and optimization.

The "agents" of the seed are the models (per domain) and the loop's own parts (DESIGN
decision 7).  The feedback side: :mod:`~kisystem.improve.feedback` records and aggregates
feedback in the learning database, :mod:`~kisystem.improve.patterns` finds what recurs,
:mod:`~kisystem.improve.learnings` turns patterns into lessons, and
:mod:`~kisystem.improve.recorder` makes the loop record its own feedback from its events.
"""
