"""Support code for the tests and the benchmark, never imported by the app itself.

It lives in the package (as indico keeps ``indico/testing``) so that ``tests/`` and ``bench/``
import one copy from wherever moralbank is installed, with no path tricks.
"""
