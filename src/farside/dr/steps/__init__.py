"""The steps of a DR run, one a module, each a function ``run(ctx, data)`` of the run context and
the step's own journal data (see ``farside.dr.runner`` for their order)."""
