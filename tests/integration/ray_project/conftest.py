"""This folder is a user's project that the Ray tests ship to Ray workers, not tests: pytest
(which imports every module for doctests) must leave its modules alone."""

collect_ignore = ["fan.py", "helpers.py"]
