"""The speed baseline: the notebook's own loops (``notebook_loops``).

Installed with convx as ``convx._baseline`` (see ``pyproject.toml``) so that
``python -m convx`` can time convx against the code it replaces.  Nothing in
convx computes a result with it.
"""
