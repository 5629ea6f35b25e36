"""Helpers the tests import (never from a conftest): the machine and the OpenSSH client (host),
the stand-ins for what needs the internet (stand_ins), shared test data, and the unit layer's
no-process guard (no_processes)."""
