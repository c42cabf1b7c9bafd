"""The runner tests copy ./project into a temporary folder; pytest must not collect it."""

collect_ignore = ["project"]
