"""Test-only stand-in for PythonQt's ``qt`` module, which only exists inside the Slicer application.

PUMITSlicer.py imports ``qt`` at the top like every scripted module but uses it only in its widget,
which needs the real application and is not exercised under pytest. Nothing is defined here.
"""
