"""`forge bench`: forge's image against CPython, Nuitka-default, PyInstaller and the static C floor.

forge.bench.run orchestrates; forge.bench.baselines builds the baselines, one module a variant (recipes
in images/baselines/); forge.bench.model holds the values they pass (Variant, labels, the bench cache;
a leaf); forge.bench.timing times forge's own build; forge.bench.measure times one run; forge.bench.stats holds the medians and the
spread rule; forge.bench.budget breaks a cold start down; forge.bench.report writes the outputs.
See docs/bench.md.
"""
