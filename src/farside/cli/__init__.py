"""The ``farside`` command: one module a command group, one error handler for all."""
