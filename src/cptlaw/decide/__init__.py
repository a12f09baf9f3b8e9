"""Decisions from fitted laws: D-CPT usages, DOS selection, validation comparisons and the report.

The library behind the `recommend`, `select`, `validate` and `report` stages (the stages only wire it).
"""
