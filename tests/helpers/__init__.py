"""Helper code shared by the tests, imported explicitly (`from tests.helpers.synth import points`); the
fixtures built from it are in the conftest.py nearest to their users."""
