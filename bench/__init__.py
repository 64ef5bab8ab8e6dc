"""The imc_sidecar benchmark: Kamailio 5.6 imc and the sidecar under the same load.

Run ``bench/run`` (or ``python -m bench``) from the repository root; see :mod:`bench.cli`.
"""
