"""Answering: turn a trained bundle and users' histories into ranked, external-id results."""
