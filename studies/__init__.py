"""The project's studies, one module per question, run from the repository root.

``python -m studies.NAME --quick`` runs one in seconds (CI); without ``--quick`` it writes
the committed data (``data/NAME/``, with a generated README) and the tables of its results
page (``docs/results/NAME.md``).  Shared plumbing is in :mod:`studies._common`.
"""
