"""Stand-alone scripts of the calls judge (standard library only).

They are not imported by kisystem: :mod:`kisystem.sandbox.judge.calls` copies them into
the judge's directory (``codec.py``, ``judge.py``) or the candidate's workspace
(``codec.py``, ``runner.py``) and runs them there with ``python -I``.  This file only
makes the directory a package, so that the scripts ship with kisystem.
"""
