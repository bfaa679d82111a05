"""The handlers of each serving contract, one module per contract; `serving/routes.py` is their route table.

A handler takes the `App` (the served model and its state) and a `Request`, and returns a `Response`;
it raises `RequestError` for bad input, which `App.handle` answers. Counting, timing, logging and
capture happen once, in `App.handle`, never here.
"""
