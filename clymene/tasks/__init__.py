"""Thin Celery task functions: decode arguments, call one domain function, record the outcome."""
