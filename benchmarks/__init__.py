"""colab_ssh's benchmarks: time to a working login, and working over a slow link (issue 6).

Run them all with ``python -m benchmarks`` as root on Linux; the results table goes to
``benchmarks/RESULTS.md``. They are not tests: nothing here asserts a timing.
"""
