"""Thin DVC stage entry points; each exposes ``main(argv)`` so tests can run it in-process."""
