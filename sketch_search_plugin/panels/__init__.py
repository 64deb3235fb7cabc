"""The dock's parts, one widget each: engine banner, sketch, where, options, run, results."""
