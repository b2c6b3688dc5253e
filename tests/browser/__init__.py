"""Helpers for the notebook, plot and browser tests: a synthetic study and a JupyterLab server."""
