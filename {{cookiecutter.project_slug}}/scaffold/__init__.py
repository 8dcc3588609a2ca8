"""`make resource`: a new domain folder like app/items, wired in, with its migration and tests.

See "Adding a resource" in README.md. Run as `python -m scaffold NAME "FIELD ..."`.
"""
