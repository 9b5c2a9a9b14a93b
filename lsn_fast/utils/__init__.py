"""Shared helpers: argument validation (:mod:`.validation`), deprecated import paths (:mod:`.deprecated`)."""
