"""Model runners: pure `(inputs, params, out_dir) -> artifacts`, no DB, settings or app imports."""
