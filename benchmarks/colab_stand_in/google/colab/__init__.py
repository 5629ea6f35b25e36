"""A stand-in for google.colab in the cold-start benchmark: the Colab UI is not here.

Only what start_ssh() touches: ``drive.mount`` (the user's consent, a fixed delay) and
``userdata.get`` (no secrets). The benchmark puts this folder on PYTHONPATH.
"""
