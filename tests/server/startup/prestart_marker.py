"""Imported ahead by the prestarted interpreter in test_prestart."""
