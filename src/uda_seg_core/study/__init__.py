"""The paper's study: its experiments and tables as data (experiments.py), running them all
(reproduce.py, with resumable stages from stages.py) and the report beside the paper's
numbers (report.py)."""
